"""Limits on a real server with a slow model: a full queue answers 503 with Retry-After at once, a request
whose deadline passes before its batch starts answers 504 and is never run, and SIGTERM drains: the server
reports not ready, finishes queued and running requests, and exits 0."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from servers import serving

from shipml.serve.protocol import MAX_ROWS

ROW = {"x": 1.0, "y": 2.0, "colour": "red"}


def _flood(server, n: int, rows: int = 32) -> list[tuple[int, dict, float]]:
    def one(_: int) -> tuple[int, dict, float]:
        t = time.perf_counter()
        status, headers, _ = server.call("POST", "/v1/models/slow/predict", {"inputs": [ROW] * rows})
        return status, headers, time.perf_counter() - t

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _batch_metric(server, field: str) -> float:
    """shipml_batch_rows_<field> of the slow model: `count` = network calls run, `sum` = rows run."""
    text = server.call("GET", "/metrics")[2]
    return float(next((line.split()[-1] for line in text.splitlines()
                       if line.startswith(f'shipml_batch_rows_{field}{{model="slow"')), 0))


def _behind_a_blocker(server, n: int) -> tuple[list, list]:
    """Send one MAX_ROWS-row request, then, once its first network call is done, `n` more at once;
    returns (the blocker's result, theirs)."""
    rows_before = _batch_metric(server, "sum")
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(_flood, server, 1, MAX_ROWS)
        while _batch_metric(server, "sum") == rows_before and not blocker.done():
            time.sleep(0.005)
        behind = _flood(server, n)
        return blocker.result(), behind


def test_a_full_queue_answers_503_fast(packages: dict[str, Path], tmp_path: Path) -> None:
    args = [f"slow={packages['slow']}", "--max-queue", "2", "--max-batch-size", "32", "--max-queue-ms", "0"]
    with serving(args, tmp_path) as server:
        results = _flood(server, 16)
    codes = [s for s, _, _ in results]
    assert set(codes) == {200, 503} and codes.count(503) >= 8, codes
    refused = [(h, t) for s, h, t in results if s == 503]
    assert all(h.get("retry-after") == "1" for h, _ in refused)
    slowest_ok = max(t for s, _, t in results if s == 200)
    assert max(t for _, t in refused) < slowest_ok  # refused at once, not after waiting


def test_admission_refuses_what_would_wait_too_long(packages: dict[str, Path], tmp_path: Path) -> None:
    args = [f"slow={packages['slow']}", "--max-batch-size", "32", "--max-queue-ms", "1"]
    with serving(args, tmp_path) as server:
        first = _flood(server, 1)  # times a network call: the estimate starts from it
        results = _flood(server, 16)
    assert first[0][0] == 200
    codes = [s for s, _, _ in results]
    assert 200 in codes and 503 in codes, codes  # one at a time goes in; the ones behind it would wait too long
    headers = next(h for s, h, _ in results if s == 503)
    assert headers.get("retry-after") == "1"


@pytest.mark.parametrize(("sessions", "during_code"), [(1, 503), (2, 200)])
def test_admission_counts_the_rows_already_running(packages: dict[str, Path], tmp_path: Path, sessions: int,
                                                   during_code: int) -> None:
    # The queue is empty while a 1024-row blocker runs (~0.5 s of calls), so only the rows taken by the worker
    # make the estimated wait exceed 100 ms: with one session a request sent then is refused, one sent after it
    # is let in; with two, the free session runs it at once, so it is let in.
    args = [f"slow={packages['slow']}", "--max-batch-size", "32", "--max-wait-ms", "0", "--max-queue-ms", "100",
            "--sessions", str(sessions), "--threads", "1"]
    with serving(args, tmp_path) as server:
        assert _flood(server, 1)[0][0] == 200  # times a call: the estimate starts from it
        blocked, during = _behind_a_blocker(server, 1)
        after = _flood(server, 1)
    assert [s for s, _, _ in blocked] == [200]
    assert [s for s, _, _ in during] == [during_code], during
    assert [s for s, _, _ in after] == [200]


def test_a_request_past_its_deadline_is_never_run(packages: dict[str, Path], tmp_path: Path) -> None:
    # A blocker of MAX_ROWS (1024) rows runs as 32 calls of 32 (~15 ms each here); requests sent once its first call
    # is done wait behind the other 31, longer than their 150 ms deadline however fast or slow the machine is.
    args = [f"slow={packages['slow']}", "--deadline-ms", "150", "--max-batch-size", "32", "--max-wait-ms", "0",
            "--max-queue-ms", "0",  # no admission estimate: every request is let in, the deadline decides
            "--sessions", "1"]  # one worker: the blocker holds it
    with serving(args, tmp_path) as server:
        rows_before = _batch_metric(server, "sum")
        blocked, results = _behind_a_blocker(server, 6)
        time.sleep(0.5)  # anything still queued would have run by now
        ran = _batch_metric(server, "sum") - rows_before
    assert [s for s, _, _ in blocked] == [200]  # started before its deadline: runs to the end
    assert [s for s, _, _ in results] == [504] * 6, results
    assert ran == MAX_ROWS  # only the blocker's rows ran: the 504s never did


def test_sigterm_drains_queued_and_running_requests(packages: dict[str, Path], tmp_path: Path) -> None:
    with serving([f"slow={packages['slow']}", "--max-batch-size", "32"], tmp_path) as server:
        results: list[tuple[int, dict, float]] = []
        worker = threading.Thread(target=lambda: results.extend(_flood(server, 8)))
        worker.start()
        time.sleep(0.3)  # the requests are in: queued or running
        server.proc.send_signal(signal.SIGTERM)
        worker.join(60)
        code = server.proc.wait(30)
    assert [s for s, _, _ in results] == [200] * 8, results
    assert code == 0, server.output()
    assert "Waiting for" in server.output() or "Shutting down" in server.output()


def test_the_admission_estimate_weighs_calls_by_their_rows() -> None:
    # Length grouping cuts a batch into a full call and small leftovers; a 1-row call costs several times a row of
    # a full one. Per-call per-row averages let the leftovers dominate (measured on SpamAssassin: an estimate 2.5x
    # the real wait, and 64 clients refused at --max-queue-ms 2500); counted by rows, they barely move it.
    from concurrent.futures import ThreadPoolExecutor as Pool

    from shipml.serve.batcher import Batcher

    b = Batcher([object()], Pool(1), max_batch_size=32, max_wait_s=0.0, max_queue=8, max_queue_s=1.0)
    assert b.row_s is None and b.expected_wait() == 0.0
    for _ in range(20):
        b.timed(0.32, 32)  # full calls: 10 ms a row
        b.timed(0.03, 1)  # a leftover row: 30 ms
    assert abs(b.row_s - 0.35 / 33) < 1e-3, b.row_s  # ~10.6 ms, not ~20 ms
    b.taken = 64  # rows of a running batch: ahead of a new request only while no session is free
    assert b.expected_wait() == 0.0
    b.busy = 1
    assert abs(b.expected_wait() - 64 * b.row_s) < 1e-9
