"""Monitoring on real data (the monitoring issue's numbers): drift flags and live accuracy through a real
`shipml serve`, and what monitoring costs in throughput.

    python bench/monitor.py [--only spam|mnist|overhead] [--work /tmp/bench-monitor]

spam      SpamAssassin time split: a parquet of the older parts (easy_ham + spam) that shipml splits 80/10/10
          with the config's seed; the later parts (easy_ham_2 + spam_2) stay out of the data set, for replay.
          examples/spam.yaml is trained with --spam-set overrides (default train.epochs=2, model.max_length=128)
          and exported (the package carries reference.json). Per case a fresh `shipml serve spam=<package>
          --min-rows 100` gets the rows (--rows-per-request per POST /v1/models/spam/predict), then feedback
          with the true labels for every answer, then GET /v1/models/spam/monitor is printed:
            held-out   the older parts' test split rows                         expected: no drift flag
            val        the older parts' validation rows (the test rows are the package's prediction reference,
                       so `held-out` cannot move predicted/confidence; these rows are in neither)   no flag
            later      easy_ham_2 + spam_2 (shuffled; the window keeps the last 1000 rows)   expected: flag
            later-mix  the later parts resampled to the training split's spam share (class mix as in training):
                       does the input side move, not only the predicted classes? (no expectation; shown)
mnist     examples/mnist.yaml trained (--mnist-set overrides) and exported; the run's test images (uint8 28x28)
          replayed as PNG: as they are (expected: no flag), the validation images (no flag), rotated 30 degrees
          with PIL (bilinear, black fill; expected: flag), the same with nearest-neighbour resampling (no blur:
          does the flag come from the rotation or from the interpolation?) and inverted (255 - x; flag).
overhead  the spam run's int8 package (`shipml compress`, dynamic int8; or --overhead-package) served with
          monitoring on and off, alternated (on, off, on, off, ...), each under --clients concurrent keep-alive
          clients (asyncio) for --seconds after --warm seconds, one test text per request: requests/s per run,
          the on/off ratio (target: cost <= 5%). Before each run the script waits until other processes use
          under --busy cores (polled every 30 s, at most --max-wait s) and prints /proc/loadavg and the busiest
          processes.

Trained runs, their packages and the data tables are kept in --work, so a re-run skips training.
Run it under `nice -n 19` on a shared machine.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import http.client
import io
import json
import os
import random
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
HOST = "127.0.0.1"
TICK = os.sysconf("SC_CLK_TCK")
OLD = {"ham": "easy_ham", "spam": "spam"}
LATER = {"ham": "easy_ham_2", "spam": "spam_2"}


def say(*parts: Any) -> None:
    print(*parts, flush=True)


# ------------------------------------------------------------------------------------------------ machine
def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def cpu_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / TICK


def proc_cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    parts = stat.rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def own_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def busiest(n: int = 4) -> str:
    out = subprocess.run(["ps", "-eo", "pcpu,pid,etime,args", "--sort=-pcpu"], capture_output=True, text=True).stdout
    return "; ".join(" ".join(line.split())[:100] for line in out.splitlines()[1:n + 1])


def wait_quiet(busy: float, max_wait: float) -> tuple[float, bool]:
    """Wait until other processes use under `busy` cores (3 s samples, polled every 30 s), at most max_wait s."""
    t0 = time.perf_counter()
    while True:
        b0 = cpu_busy()
        time.sleep(3.0)
        others = (cpu_busy() - b0) / 3.0
        if others < busy or time.perf_counter() - t0 > max_wait:
            return others, others < busy
        say(f"  waiting for a quiet machine: others use {others:.2f} cores; load {loadavg()}; busiest: {busiest(3)}")
        time.sleep(27.0)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


# ------------------------------------------------------------------------------------------------ server
@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def serve(models: list[str], log: Path, *extra: str, timeout: float = 600.0) -> Server:
    """A real `shipml serve` process on a free port, once /v2/health/ready answers 200."""
    port = free_port()
    exe = Path(sys.executable).parent / "shipml"
    cmd = [str(exe) if exe.exists() else "shipml", "serve", *models, "--port", str(port), *extra]
    out = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return Server(proc, port, log)
        except OSError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{' '.join(cmd)} was not ready after {timeout:.0f} s; see {log}")


class Client:
    """One keep-alive HTTP/1.1 connection (http.client), JSON in and out."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection(HOST, port, timeout=300)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None)

    def close(self) -> None:
        self.conn.close()


def replay(port: int, model: str, inputs: list[Any], labels: list[str], per_request: int,
           threads: int = 2) -> dict[str, Any]:
    """Send the rows (per_request per POST .../predict, `threads` connections), then feedback with the true labels
    for every answer, then read the monitor JSON."""
    chunks = [(inputs[i:i + per_request], labels[i:i + per_request]) for i in range(0, len(inputs), per_request)]
    answers: list[tuple[str, list[str], list[str]]] = []
    failed: dict[int, int] = {}

    def work(part: list[tuple[list[Any], list[str]]]) -> list[tuple[str, list[str], list[str]]]:
        c, got = Client(port), []
        try:
            for rows, truth in part:
                status, body = c.call("POST", f"/v1/models/{model}/predict", {"inputs": rows})
                if status != 200:
                    failed[status] = failed.get(status, 0) + 1
                    continue
                got.append((body["request_id"], [p["label"] for p in body["predictions"]], truth))
        finally:
            c.close()
        return got

    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:  # interleaved so the window keeps the replay's order roughly
        for got in pool.map(work, [chunks[k::threads] for k in range(threads)]):
            answers.extend(got)
    predict_s = time.perf_counter() - t0
    c = Client(port)
    fb: dict[int, int] = {}
    try:
        for rid, _, truth in answers:
            status, _ = c.call("POST", f"/v1/models/{model}/feedback", {"request_id": rid, "labels": truth})
            fb[status] = fb.get(status, 0) + 1
        status, monitor = c.call("GET", f"/v1/models/{model}/monitor")
    finally:
        c.close()
    if status != 200:
        raise RuntimeError(f"monitor route answered {status}: {monitor}")
    pred = [p for _, ps, _ in answers for p in ps]
    truth_all = [t for _, _, ts in answers for t in ts]
    correct = sum(a == b for a, b in zip(pred, truth_all, strict=True))
    return {"monitor": monitor, "sent": len(inputs), "requests": len(chunks), "failed": failed, "feedback": fb,
            "predict_s": predict_s, "all_rows": len(pred), "all_correct": correct}


# ------------------------------------------------------------------------------------------------ tables
def fnum(x: Any, digits: int = 3) -> str:
    if x is None:
        return ""
    if isinstance(x, float):
        if x != 0 and (abs(x) < 10 ** -digits or abs(x) >= 1e5):
            return f"{x:.2e}"
        return f"{x:.{digits}f}"
    return str(x)


def shares(d: dict[str, float] | None) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in (d or {}).items())


def print_case(title: str, result: dict[str, Any], expected: str) -> dict[str, Any]:
    """Markdown tables of one replay: the drift verdict, every signal, live accuracy."""
    v = result["monitor"]["versions"][0]
    drift, acc = v["drift"], v["accuracy"]
    say(f"\n#### {title}\n")
    say(f"sent {result['sent']} rows in {result['requests']} requests ({result['predict_s']:.1f} s; failed "
        f"{result['failed'] or 0}); feedback statuses {result['feedback']}; window: {result['monitor']['window']}")
    say("\n| drift status | window rows | flag | moved signals | expected | as expected |")
    say("| --- | --- | --- | --- | --- | --- |")
    want_flag = expected == "flag"
    met = "" if expected == "-" else ("yes" if drift["flag"] == want_flag else "**NO**")
    say(f"| {drift['status']} | {drift['rows']} | {drift['flag']} | {', '.join(drift['moved']) or '-'} | "
        f"{expected} | {met} |")
    say("\n| signal | PSI | KS | KS p-value | reference median (share) | live median (share) | moved |")
    say("| --- | --- | --- | --- | --- | --- | --- |")
    for name, s in drift["signals"].items():
        if s.get("ks") is None:  # categorical
            ref, live = shares(s.get("reference_share")), shares(s.get("live_share"))
        else:
            ref, live = fnum(s["reference_median"], 4), fnum(s["live_median"], 4)
        say(f"| {name} | {fnum(s['psi'])} | {fnum(s['ks'])} | {fnum(s['ks_p'])} | {ref} | {live} | "
            f"{'**yes**' if s['moved'] else 'no'} |")
    say("\n| live accuracy (window) [95% CI] | judged rows | package test accuracy | accuracy flag | "
        "all replayed rows |")
    say("| --- | --- | --- | --- | --- |")
    value = (f"{acc['value']:.4f} [{acc['ci_low']:.4f}, {acc['ci_high']:.4f}]" if acc["value"] is not None else "")
    say(f"| {value} | {acc['rows']} | {fnum(acc['test'], 4)} | {acc['flag']} | "
        f"{result['all_correct'] / max(1, result['all_rows']):.4f} ({result['all_correct']}/{result['all_rows']}) |")
    return {"case": title, "flag": drift["flag"], "expected": expected, "met": met, "moved": drift["moved"],
            "accuracy": acc}


def run_case(name: str, package: Path, model: str, inputs: list[Any], labels: list[str], args: argparse.Namespace,
             title: str, expected: str) -> dict[str, Any]:
    if args.max_rows and len(inputs) > args.max_rows:  # the first rows of an already shuffled replay
        inputs, labels = inputs[:args.max_rows], labels[:args.max_rows]
        title += f", first {args.max_rows} of them replayed (--max-rows)"
    say(f"case {name}: {len(inputs)} rows; load {loadavg()}")
    server = serve([f"{model}={package}"], args.work / f"serve-{name}.log", "--min-rows", str(args.min_rows),
                   "--poll-s", "0")
    try:
        result = replay(server.port, model, inputs, labels, args.rows_per_request)
    finally:
        rc = server.stop()
    (args.work / f"monitor-{name}.json").write_text(json.dumps(result["monitor"], indent=1))
    out = print_case(title, result, expected)
    say(f"(server exit code {rc}; log {server.log}; monitor JSON {args.work / f'monitor-{name}.json'})")
    return out


# ------------------------------------------------------------------------------------------------ runs
def cached_run(work: Path, key: str, make: Any) -> Any:
    """A trained + exported run, kept in work/<key>.run (its path) so re-runs skip training."""
    import shipml

    marker = work / f"{key}.run"
    if marker.is_file():
        path = Path(marker.read_text().strip())
        if (path / "package" / "reference.json").is_file():
            say(f"{key}: cached run {path}")
            return shipml.Run(path)
    from shipml.export import export_run

    t0 = time.perf_counter()
    run = make()
    t1 = time.perf_counter()
    export_run(run, quiet=True)
    say(f"{key}: trained in {t1 - t0:.0f} s, exported in {time.perf_counter() - t1:.0f} s: {run.path}")
    marker.write_text(str(run.path))
    return run


def test_figure(run: Any) -> str:
    a = run.metrics["test"]["accuracy"]
    return f"{a['value']:.4f} [{a['ci_low']:.4f}, {a['ci_high']:.4f}]"


def spam_tables(work: Path) -> tuple[Path, Path]:
    """older.parquet (text, label; the older parts) and later.parquet (the later parts), parsed as the folder
    loader parses emails (examples/spam.yaml's email settings)."""
    import pandas as pd

    from shipml.config import load_config
    from shipml.data import fetch_dataset, message_text

    older, later = work / "spam-older.parquet", work / "spam-later.parquet"
    if older.is_file() and later.is_file():
        return older, later
    folder = work / "spamassassin"
    if not (folder / "MANIFEST.json").is_file():
        fetch_dataset("spamassassin", folder, from_dir=SHARED / "spamassassin")
    email = load_config(ROOT / "examples" / "spam.yaml").data.email
    for parts, out in ((OLD, older), (LATER, later)):
        rows = []
        for label, part in parts.items():
            for f in sorted((folder / label / part).iterdir()):
                text = message_text(f.read_bytes(), headers=email.headers, body=email.body, max_chars=email.max_chars)
                rows.append({"text": text, "label": label, "part": part})
        frame = pd.DataFrame(rows)
        (frame if out == later else frame.drop(columns="part")).to_parquet(out)  # the training table: text, label
    return older, later


def spam_run(args: argparse.Namespace) -> Any:
    import shipml
    from shipml.config import load_config

    older, _ = spam_tables(args.work)

    def make() -> Any:
        cfg = load_config(ROOT / "examples" / "spam.yaml")
        overrides = [f"data.path={older}", "data.format=parquet",
                     f"output_dir={args.work / 'runs'}", "name=spam-older", *args.spam_set]
        say(f"training examples/spam.yaml with {overrides}")
        return shipml.train(cfg, overrides=overrides, quiet=True)

    return cached_run(args.work, "spam", make)


def split_rows(run: Any, split: str) -> tuple[Any, np.ndarray]:
    from shipml.data import load_dataset

    ds = load_dataset(run.config.data, seed=run.config.seed, task_kind=run.task.kind, kind=run.task.data_kind)
    return ds, ds.indices(split)


def spam(args: argparse.Namespace, verdicts: list[dict[str, Any]]) -> None:
    import pandas as pd

    run = spam_run(args)
    pkg = run.path / "package"
    ds, test = split_rows(run, "test")
    col = run.task.prep["text_column"]
    train_texts = set(ds.frame[col].iloc[ds.indices("train")])
    spam_share = float((ds.frame[ds.target].iloc[ds.indices("train")] == "spam").mean())
    later = pd.read_parquet(args.work / "spam-later.parquet")
    n_later = len(later)
    later = later.drop_duplicates("text")
    later = later[~later["text"].isin(train_texts)].reset_index(drop=True)
    ref = json.loads((pkg / "reference.json").read_text())
    say(f"\n### SpamAssassin time split\n\nrun {run.id}: examples/spam.yaml with {args.spam_set}; data: older parts "
        f"(easy_ham + spam) {len(ds.frame)} texts after dedupe, split {len(ds.indices('train'))} train / "
        f"{len(ds.indices('val'))} val / {len(test)} test (seed {run.config.seed}), train spam share "
        f"{spam_share:.3f}; package test accuracy {test_figure(run)}; reference.json: {ref['rows']}. Later parts "
        f"(easy_ham_2 + spam_2): {n_later} messages, {len(later)} after removing duplicates and texts in the "
        f"training split ({int((later['label'] == 'spam').sum())} spam).")
    rng = random.Random(0)
    held = [str(t) for t in ds.frame[col].iloc[test]]
    held_y = [str(y) for y in ds.frame[ds.target].iloc[test]]
    order = list(range(len(held)))
    rng.shuffle(order)
    cases = args.spam_cases
    if "held-out" in cases:
        verdicts.append(run_case("spam-held-out", pkg, "spam", [held[i] for i in order], [held_y[i] for i in order],
                                 args, f"spam (a): older parts' held-out test rows ({len(held)})", "no flag"))
    idx = list(range(len(later)))
    rng.shuffle(idx)
    texts, labels = later["text"].tolist(), later["label"].tolist()
    if "val" in cases:  # in neither reference: inputs come from train rows, predictions from the test rows
        val = ds.indices("val")
        vt, vy = [str(t) for t in ds.frame[col].iloc[val]], [str(y) for y in ds.frame[ds.target].iloc[val]]
        order = list(range(len(vt)))
        rng.shuffle(order)
        verdicts.append(run_case("spam-val", pkg, "spam", [vt[i] for i in order], [vy[i] for i in order], args,
                                 f"spam (a'): older parts' validation rows ({len(vt)})", "no flag"))
    if "later" in cases:
        verdicts.append(run_case("spam-later", pkg, "spam", [texts[i] for i in idx], [labels[i] for i in idx], args,
                                 f"spam (b): later parts easy_ham_2 + spam_2 ({len(idx)}, shuffled)", "flag"))
    if "later-mix" in cases:
        hams = [i for i in idx if labels[i] == "ham"]
        n_spam = round(len(hams) * spam_share / (1 - spam_share))
        spams = [i for i in idx if labels[i] == "spam"][:n_spam]
        mix = hams + spams
        rng.shuffle(mix)
        verdicts.append(run_case("spam-later-mix", pkg, "spam", [texts[i] for i in mix], [labels[i] for i in mix],
                                 args, f"spam (c): later parts at the training spam share ({len(hams)} ham + "
                                       f"{len(spams)} spam)", "-"))


# ------------------------------------------------------------------------------------------------ mnist
def png_b64(x: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(x, "L").save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def rotate(x: np.ndarray, degrees: float, nearest: bool = False) -> np.ndarray:
    from PIL import Image

    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR
    return np.asarray(Image.fromarray(x, "L").rotate(degrees, resample=resample, fillcolor=0))


def mnist(args: argparse.Namespace, verdicts: list[dict[str, Any]]) -> None:
    import shipml
    from shipml.config import load_config

    def make() -> Any:
        cfg = load_config(ROOT / "examples" / "mnist.yaml")
        overrides = [f"data.path={SHARED / 'mnist5k.tar.gz'}", f"output_dir={args.work / 'runs'}", *args.mnist_set]
        say(f"training examples/mnist.yaml with {overrides}")
        return shipml.train(cfg, overrides=overrides, quiet=True)

    run = cached_run(args.work, "mnist", make)
    pkg = run.path / "package"
    ds, test = split_rows(run, "test")
    images = ds.images[test][..., 0]  # (N, 28, 28) uint8, grey
    labels = [str(y) for y in ds.frame[ds.target].iloc[test]]
    say(f"\n### MNIST 5k\n\nrun {run.id}: examples/mnist.yaml {args.mnist_set or ''}; {len(ds.frame)} images, "
        f"{len(ds.indices('train'))} train / {len(test)} test; package test accuracy {test_figure(run)}")
    val = ds.indices("val")
    variants = {
        "as-is": (images, labels, "test images as they are", "no flag"),
        "val": (ds.images[val][..., 0], [str(y) for y in ds.frame[ds.target].iloc[val]],
                "validation images as they are (in neither the input nor the prediction reference)", "no flag"),
        "rotated-30": (np.stack([rotate(x, 30) for x in images]), labels, "test images rotated 30 degrees (bilinear)",
                       "flag"),
        "rotated-30-nearest": (np.stack([rotate(x, 30, nearest=True) for x in images]), labels,
                               "test images rotated 30 degrees (nearest neighbour: no blur)", "flag"),
        "inverted": (255 - images, labels, "test images inverted (255 - x)", "flag")}
    for name, (xs, ys, what, expected) in variants.items():
        if name not in args.mnist_cases:
            continue
        verdicts.append(run_case(f"mnist-{name}", pkg, "mnist", [png_b64(x) for x in xs], ys, args,
                                 f"MNIST: {what} ({len(xs)})", expected))


# ------------------------------------------------------------------------------------------------ overhead
def payloads(texts: list[str], port: int) -> list[bytes]:
    out = []
    for text in texts:
        body = json.dumps({"inputs": [text]}).encode()
        head = (f"POST /v1/models/spam/predict HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        out.append(head + body)
    return out


async def closed_loop(port: int, requests: list[bytes], clients: int, warm: float,
                      seconds: float) -> tuple[int, dict[int, int], list[float], float]:
    """`clients` keep-alive connections, each sending its next request when the last is answered: answers (200)
    and failures that started inside [warm, warm + seconds), their latencies, the generator's CPU seconds."""
    ok, lat, bad = 0, [], {}
    t_begin = time.perf_counter()
    t_end = t_begin + warm + seconds

    async def client(i: int) -> None:
        nonlocal ok
        k = (i * 7919) % len(requests)
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while time.perf_counter() < t_end:
                t0 = time.perf_counter()
                writer.write(requests[k % len(requests)])
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.split(b"\r\n")
                status = int(lines[0].split(b" ", 2)[1])
                length = next(int(v) for key, _, v in (x.partition(b":") for x in lines[1:])
                              if key.strip().lower() == b"content-length")
                await reader.readexactly(length)
                if warm <= t0 - t_begin < warm + seconds:
                    if status == 200:
                        ok += 1
                        lat.append(time.perf_counter() - t0)
                    else:
                        bad[status] = bad.get(status, 0) + 1
                k += 1
        finally:
            writer.close()

    cpu0 = own_cpu()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return ok, bad, lat, own_cpu() - cpu0


def overhead(args: argparse.Namespace) -> None:
    if args.overhead_package is not None:  # any spam package; texts: the older parts, all of them
        import pandas as pd

        pkg = args.overhead_package.resolve()
        texts = [str(t) for t in pd.read_parquet(spam_tables(args.work)[0])["text"]]
        source = f"{len(texts)} texts of the older parts"
    else:
        run = spam_run(args)
        pkg = run.path / "variants" / "int8"
        if not (pkg / "signature.json").is_file():
            from shipml.compress import compress_run

            t0 = time.perf_counter()
            compress_run(run, methods="int8", measure=False, quiet=True)
            say(f"built the int8 variant in {time.perf_counter() - t0:.0f} s")
        ds, test = split_rows(run, "test")
        col = run.task.prep["text_column"]
        texts = [str(t) for t in ds.frame[col].iloc[test]]
        source = f"the {len(texts)} held-out test texts"
    random.Random(0).shuffle(texts)
    rows = []
    order = (["on", "off"] * args.pairs)
    give_up = time.perf_counter() + args.max_wait
    for i, mode in enumerate(order):
        others, quiet = wait_quiet(args.busy, max(0.0, give_up - time.perf_counter()))
        state = f"load {loadavg()}, others {others:.2f} cores"
        if not quiet and not args.measure_busy:  # a figure taken beside other work says nothing, and spoils theirs
            say(f"overhead: no quiet machine within --max-wait {args.max_wait:.0f} s ({state}; busiest: {busiest(3)}); "
                f"stopping after {len(rows)} run(s) (--measure-busy measures anyway)")
            break
        state += "" if quiet else " (NOT QUIET)"
        say(f"overhead run {i + 1}/{len(order)} monitoring {mode}: {state}; busiest: {busiest(3)}")
        extra = ["--poll-s", "0"] + ([] if mode == "on" else ["--no-monitor"])
        server = serve([f"spam={pkg}"], args.work / f"serve-overhead-{i}-{mode}.log", *extra)
        try:
            busy0, srv0 = cpu_busy(), proc_cpu(server.proc.pid)
            t0 = time.perf_counter()
            ok, bad, lat, gen = asyncio.run(closed_loop(server.port, payloads(texts, server.port), args.clients,
                                                        args.warm, args.seconds))
            wall = time.perf_counter() - t0
            srv, busy = proc_cpu(server.proc.pid) - srv0, cpu_busy() - busy0
            monitor = None
            if mode == "on":
                c = Client(server.port)
                try:
                    _, monitor = c.call("GET", "/v1/models/spam/monitor")
                finally:
                    c.close()
        finally:
            rc = server.stop()
        lat_ms = np.asarray(lat) * 1000
        row = {"mode": mode, "rps": ok / args.seconds, "ok": ok, "failed": sum(bad.values()), "statuses": bad,
               "p50": float(np.percentile(lat_ms, 50)) if ok else float("nan"),
               "p99": float(np.percentile(lat_ms, 99)) if ok else float("nan"),
               "server_cores": srv / wall, "gen_cores": gen / wall,
               "others_cores": max(0.0, busy - srv - gen) / wall, "state": state, "load_after": loadavg(), "rc": rc,
               "drift": (monitor["versions"][0]["drift"]["status"] if monitor else "")}
        rows.append(row)
        say(f"  {mode}: {row['rps']:.1f} req/s, p50 {row['p50']:.1f} ms, p99 {row['p99']:.1f} ms, failed {bad or 0}, "
            f"server {row['server_cores']:.2f} cores, generator {row['gen_cores']:.2f}, others "
            f"{row['others_cores']:.2f}, load after {row['load_after']}")
    (args.work / "overhead.json").write_text(json.dumps(rows, indent=1))
    from shipml.serve import ServeSettings

    dflt = ServeSettings(models=("spam",))
    say(f"\n### Overhead: monitoring on vs off\n\nspam package {pkg}, {args.clients} keep-alive clients, "
        f"{args.seconds:.0f} s measured after {args.warm:.0f} s warm-up, 1 text per request from {source}; "
        f"server defaults ({dflt.session_count()} session(s) x {dflt.session_threads()} thread(s), batch "
        f"{dflt.max_batch_size}, wait {dflt.max_wait_ms:g} ms), --poll-s 0; "
        f"{os.cpu_count()} cores\n")
    say("| run | monitoring | req/s | p50 ms | p99 ms | failed | server cores | generator cores | others cores | "
        "before the run | load after | drift status at the end |")
    say("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for i, r in enumerate(rows):
        say(f"| {i + 1} | {r['mode']} | {r['rps']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['failed']} | "
            f"{r['server_cores']:.2f} | {r['gen_cores']:.2f} | {r['others_cores']:.2f} | {r['state']} | "
            f"{r['load_after']} | {r['drift']} |")
    on = [r["rps"] for r in rows if r["mode"] == "on"]
    off = [r["rps"] for r in rows if r["mode"] == "off"]
    if not on or not off:
        say("\nnot enough runs for an on/off ratio")
        return
    ratio = float(np.mean(on) / np.mean(off))
    pairs = [a / b for a, b in zip(on, off, strict=False)]
    say(f"\nmean on {np.mean(on):.1f} req/s, mean off {np.mean(off):.1f} req/s: on/off = {ratio:.3f}, cost "
        f"{(1 - ratio) * 100:+.1f}% (per pair: {', '.join(f'{p:.3f}' for p in pairs)}); target cost <= 5%: "
        f"{'MET' if ratio >= 0.95 else 'NOT MET'}")


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["spam", "mnist", "overhead"], action="append")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-monitor"))
    ap.add_argument("--spam-set", action="append", default=None,
                    help="overrides of examples/spam.yaml (default: train.epochs=2 model.max_length=128)")
    ap.add_argument("--mnist-set", action="append", default=[], help="overrides of examples/mnist.yaml")
    ap.add_argument("--spam-cases", default="held-out,val,later,later-mix")
    ap.add_argument("--mnist-cases", default="as-is,val,rotated-30,rotated-30-nearest,inverted")
    ap.add_argument("--rows-per-request", type=int, default=4)
    ap.add_argument("--min-rows", type=int, default=100)
    ap.add_argument("--max-rows", type=int, default=0, help="replay at most this many rows per case (0: all); the "
                    "window keeps the last 1000 anyway")
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--warm", type=float, default=5.0)
    ap.add_argument("--overhead-package", type=Path, default=None,
                    help="serve this spam package in the overhead part (default: the spam run's int8 variant)")
    ap.add_argument("--pairs", type=int, default=2, help="on/off pairs in the overhead part")
    ap.add_argument("--busy", type=float, default=0.3, help="wait until other processes use under this many cores")
    ap.add_argument("--max-wait", type=float, default=1800.0, help="overhead: seconds to wait for quiet, in all")
    ap.add_argument("--measure-busy", action="store_true", help="overhead: measure even when the wait ran out")
    args = ap.parse_args()
    args.spam_set = args.spam_set if args.spam_set is not None else ["train.epochs=2", "model.max_length=128"]
    args.spam_cases = args.spam_cases.split(",")
    args.mnist_cases = args.mnist_cases.split(",")
    args.work = args.work.resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    only = args.only or ["spam", "mnist", "overhead"]
    say(f"bench/monitor.py {only}: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {os.cpu_count()} cores, load {loadavg()}")
    verdicts: list[dict[str, Any]] = []
    if "spam" in only:
        spam(args, verdicts)
    if "mnist" in only:
        mnist(args, verdicts)
    if verdicts:
        say("\n### Expectations\n\n| case | expected | drift flag | moved | as expected | live accuracy [95% CI] "
            "| test accuracy | accuracy flag |")
        say("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for v in verdicts:
            a = v["accuracy"]
            acc = f"{a['value']:.4f} [{a['ci_low']:.4f}, {a['ci_high']:.4f}]" if a["value"] is not None else ""
            say(f"| {v['case']} | {v['expected']} | {v['flag']} | {', '.join(v['moved']) or '-'} | {v['met']} | {acc} "
                f"| {fnum(a['test'], 4)} | {a['flag']} |")
    if "overhead" in only:
        overhead(args)


if __name__ == "__main__":
    main()
