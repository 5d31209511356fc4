"""Scale-out as docs/serving.md describes it: several workers on one box sharing the port, following one
PostgreSQL catalog; every worker switches when production moves, and /metrics sums all workers."""

from __future__ import annotations

import time
from pathlib import Path

from servers import serving
from test_swap import INFER, _package

from shipml.registry import Registry


def test_two_workers_follow_a_postgres_catalog(postgres_url: str, tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg", url=postgres_url)
    for seed in (0, 1):
        reg.register(_package(tmp_path / f"v{seed + 1}", seed), name="pets")
    reg.catalog.update_aliases("pets", {"production": (1, None)}, event="release", why="test")
    args = ["pets", "--registry", str(reg.root), "--workers", "2", "--poll-s", "0.2"]
    with serving(args, tmp_path, env={"SHIPML_REGISTRY_URL": postgres_url}) as server:
        deadline = time.monotonic() + 60
        while "shipml_requests_total" not in server.call("GET", "/metrics")[2] or server.output().count(
                "loaded and warmed up") < 2:  # both workers up
            server.call("POST", "/v2/models/pets/infer", INFER)
            assert time.monotonic() < deadline, server.output()
            time.sleep(0.1)
        reg.catalog.update_aliases("pets", {"production": (2, None)}, event="release", why="test")
        time.sleep(1.5)  # several polls of each worker
        versions = [server.call("POST", "/v2/models/pets/infer", INFER)[2]["model_version"] for _ in range(40)]
        metrics = server.call("GET", "/metrics")[2]
    assert versions == ["2"] * 40  # new connections land on both workers: both switched
    answered = sum(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("shipml_requests_total{") and 'route="v2_infer"' in line)
    assert answered >= 40 + 1  # counted across workers (the 40 alone land on both)
