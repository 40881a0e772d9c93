"""Docker executor benchmarks (not a test), side by side with the process containerizer.

1. Time from ``ancho run`` start to the first sequence stored, warm image, Docker vs
   process, and what a bare container start costs (``docker run --rm`` of the image).
2. The 10 ms/sequence model: sequences/s from first batch running to all stored, Docker
   vs process, in one invocation (goal ≥ 0.95).
3. Image build time from nothing (base tarball cached or not) and with a warm cache;
   image sizes.

Needs ``make cassandra image``. Usage: ``python bench/docker_bench.py [--rebuild]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
ANCHO = str(Path(sys.executable).parent / "ancho")
sys.path.insert(0, str(REPO))

from common import new_user  # noqa: E402

from ancho.store import open_store  # noqa: E402
from ancho.store.cassandra import CassandraStore  # noqa: E402


def timed_run(url: str, model: str, params: dict[str, float], n: int, containerizer: str):  # type: ignore[no-untyped-def]
    """(seconds to first stored sequence, stored sequences/s) of one ``ancho run``."""
    store = open_store(url)
    assert isinstance(store, CassandraStore)
    first: list[float] = []
    stop = threading.Event()
    known = {r.id for r in store.list_runs()}

    def watch(t0: float) -> None:
        while not stop.is_set():
            runs = [r for r in store.list_runs() if r.id not in known]
            if runs:
                row = store.session.execute(
                    f"SELECT sequence FROM {store.config.keyspace}.results"
                    " WHERE run_id = %s AND bucket = 0 LIMIT 1",
                    (runs[0].id,),
                ).one()
                if row is not None:
                    first.append(time.perf_counter() - t0)
                    return
            time.sleep(0.02)

    with tempfile.TemporaryDirectory() as tmp:
        spec = {"model": {"source": str(HERE / "models" / model), "entrypoint": "model:simulate"},
                "parameters": params, "sequences": n, "seed": 1,
                "executor": {"containerizer": containerizer}}  # fmt: skip
        path = Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        t0 = time.perf_counter()
        watcher = threading.Thread(target=watch, args=(t0,), daemon=True)
        watcher.start()
        out = subprocess.run([ANCHO, "run", str(path), "--store", url, "--json"], cwd=tmp,
                             capture_output=True, text=True, check=True)  # fmt: skip
        stop.set()
        watcher.join()
    run_id = json.loads(out.stdout)["run"]
    run = store.get_run(run_id)
    all_in = next(e.ts for e in store.iter_events(run_id) if e.message.startswith("all seq"))
    store.close()
    assert run.started_at is not None
    return (first[0] if first else float("nan")), n / (all_in - run.started_at)


def container_start() -> float:
    """Median seconds of ``docker run --rm`` of the executor image (it exits at once)."""
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", "ancho/executor:latest"], capture_output=True,
                       check=False)  # fmt: skip
        times.append(time.perf_counter() - t0)
    return sorted(times)[2]


def build(rebuild: bool) -> tuple[float, float]:
    """(seconds from nothing, seconds warm) for docker/build-images.sh."""
    cold = float("nan")
    if rebuild:
        subprocess.run(["docker", "rmi", "-f", "ancho/executor:latest", "ancho/executor:0.1.0",
                        "ancho/base:bookworm"], capture_output=True, check=False)  # fmt: skip
        subprocess.run(["docker", "builder", "prune", "-af"], capture_output=True, check=False)
        t0 = time.perf_counter()
        subprocess.run(["bash", "docker/build-images.sh"], cwd=REPO, capture_output=True,
                       check=True)  # fmt: skip
        cold = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run(["bash", "docker/build-images.sh"], cwd=REPO, capture_output=True, check=True)
    return cold, time.perf_counter() - t0


def size(image: str) -> float:
    """Image size in MB."""
    out = subprocess.run(["docker", "image", "inspect", image, "--format", "{{.Size}}"],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return int(out.stdout.strip()) / 1e6


def main() -> None:
    """Run and print the report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--rebuild", action="store_true", help="also time a build from nothing")
    args = parser.parse_args()
    cold, warm = build(args.rebuild)
    url = new_user((REPO / ".ancho" / "cassandra.url").read_text().strip())
    first_p, _ = timed_run(url, "trivial", {}, 200, "process")
    first_d, _ = timed_run(url, "trivial", {}, 200, "docker")
    _, rate_p = timed_run(url, "sleepy", {"work_ms": 10}, 3000, "process")
    _, rate_d = timed_run(url, "sleepy", {"work_ms": 10}, 3000, "docker")
    print(f"## Docker executors ({time.strftime('%Y-%m-%d')})\n")
    print("| | process | docker |\n|---|---:|---:|")
    print(f"| `ancho run` start → first sequence stored (s) | {first_p:.2f} | {first_d:.2f} |")
    print(f"| 10 ms model, first running → all stored (seq/s) | {rate_p:.1f} | {rate_d:.1f} |")
    print(f"\nDocker / process for the 10 ms model: **{rate_d / rate_p:.3f}**.")
    print(f"Bare container start (`docker run --rm`, median of 5): {container_start():.2f} s.")
    print(f"Image build: from nothing {cold:.0f} s, warm cache {warm:.1f} s; sizes: "
          f"ancho/base {size('ancho/base:bookworm'):.0f} MB, "
          f"ancho/executor {size('ancho/executor:latest'):.0f} MB.")  # fmt: skip


if __name__ == "__main__":
    main()
