"""Server benchmarks (not a test): API latency under load, results download rate and memory.

1. ``GET /api/v1/runs/{id}`` under 50 concurrent connections (``wrk``, 2 threads, 15 s)
   while a run executes, next to ``GET /healthz`` (no store, no auth) under the same load:
   p50/p99 latency and requests/s.
2. Results download of a 1,000,000-sequence run through ``GET /results?format=jsonl``:
   rows/s, next to ``ancho results --store`` reading the same SQLite file directly; and
   the server's resident memory before and at its peak while serving (sampled every
   50 ms), for 100,000 and 1,000,000 rows, to show it stays flat.

Needs ``wrk`` (Debian's package; installed here when missing). Usage:
``python bench/server_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ANCHO = str(Path(sys.executable).parent / "ancho")


def ensure_wrk() -> str:
    """The wrk binary (apt-get install wrk when missing)."""
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    path = shutil.which("wrk")
    assert path is not None
    return path


def start_server(store: str, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    """``ancho server`` on a free port; the process and its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANCHO_")}
    proc = subprocess.Popen([ANCHO, "server", "--store", store, "--bind", "127.0.0.1:0"],
                            cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=(cwd / "server.log").open("w"), text=True)  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    return proc, line.split("listening on ", 1)[1].split()[0]


def submit(url: str, token: str, cwd: Path, model: Path, n: int, *params: str) -> str:
    """``ancho submit``; the run id."""
    env = {**os.environ, "ANCHO_SERVER": url, "ANCHO_TOKEN": token}
    args = [ANCHO, "submit", str(model), "--sequences", str(n), *params]
    out = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=True)
    return out.stdout.split()[1]


def get(url: str, token: str) -> dict[str, object]:
    """One authenticated GET, parsed."""
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        doc: dict[str, object] = json.load(resp)
        return doc


def wait_done(url: str, token: str, run_id: str) -> None:
    """Poll until the run ends."""
    while get(f"{url}/api/v1/runs/{run_id}", token)["state"] not in ("FINISHED", "FAILED"):
        time.sleep(0.5)


def wrk(binary: str, target: str, token: str, seconds: int) -> dict[str, float]:
    """p50/p99 (ms) and requests/s of 50 connections on ``target``."""
    out = subprocess.run([binary, "-t2", "-c50", f"-d{seconds}s", "--latency", "-H",
                          f"Authorization: Bearer {token}", target],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip

    def ms(label: str) -> float:
        m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert rps, out
    return {"p50_ms": ms("50"), "p99_ms": ms("99"), "rps": float(rps.group(1)),
            "non_2xx": float(errors.group(1)) if errors else 0.0}  # fmt: skip


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def download(url: str, token: str, run_id: str, pid: int) -> dict[str, float]:
    """Stream the run's JSONL results: rows/s and the server's RSS before and at peak."""
    before = rss_mb(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.05):
            peak[0] = max(peak[0], rss_mb(pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    req = urllib.request.Request(f"{url}/api/v1/runs/{run_id}/results?format=jsonl",
                                 headers={"Authorization": f"Bearer {token}"})  # fmt: skip
    rows = 0
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as resp:
        while chunk := resp.read(1 << 20):
            rows += chunk.count(b"\n")
    elapsed = time.perf_counter() - t0
    done.set()
    sampler.join()
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed,
            "rss_before_mb": before, "rss_peak_mb": peak[0]}  # fmt: skip


def direct(store: str, run_id: str, cwd: Path) -> dict[str, float]:
    """The baseline: ``ancho results`` reading the store itself."""
    t0 = time.perf_counter()
    out = subprocess.run([ANCHO, "results", run_id, "--store", store], cwd=cwd,
                         capture_output=True, check=True).stdout  # fmt: skip
    elapsed = time.perf_counter() - t0
    rows = out.count(b"\n")
    return {"rows": rows, "seconds": elapsed, "rows_per_s": rows / elapsed}


def main() -> None:
    """Run both benchmarks; print one JSON document."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller runs (smoke test)")
    args = parser.parse_args()
    binary = ensure_wrk()
    seconds = 5 if args.quick else 15
    big = 100_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory(prefix="ancho-server-bench-") as tmp:
        cwd = Path(tmp)
        store = f"sqlite:///{cwd / 'ancho.db'}"
        out = subprocess.run([ANCHO, "user", "add", "bench", "--store", store], cwd=cwd,
                             capture_output=True, text=True, check=True)  # fmt: skip
        token = json.loads(out.stdout)["token"]
        proc, url = start_server(store, cwd)
        report: dict[str, object] = {}
        try:
            # 1. latency while a 10 ms model runs on both cores
            rid = submit(url, token, cwd, HERE / "models" / "sleepy", 100_000,
                         "-p", "work_ms=10")  # fmt: skip
            while get(f"{url}/api/v1/runs/{rid}", token)["state"] != "RUNNING":
                time.sleep(0.2)
            time.sleep(2)
            report["run_status_under_load"] = wrk(binary, f"{url}/api/v1/runs/{rid}", token,
                                                  seconds)  # fmt: skip
            report["healthz_under_load"] = wrk(binary, f"{url}/healthz", token, seconds)
            subprocess.run([ANCHO, "kill", rid, "--store", store], cwd=cwd, check=True,
                           capture_output=True)  # fmt: skip
            # 2. downloads
            for n in (100_000, big) if big != 100_000 else (100_000,):
                rid = submit(url, token, cwd, HERE / "models" / "trivial", n)
                wait_done(url, token, rid)
                report[f"download_{n}"] = download(url, token, rid, proc.pid)
                report[f"direct_{n}"] = direct(store, rid, cwd)
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
