"""Helpers for end-to-end tests: run the real ``ancho`` command in a scratch folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
MODELS = Path(__file__).resolve().parent / "models"
ANCHO = str(Path(sys.executable).parent / "ancho")


@dataclass
class Result:
    """A finished ``ancho`` command."""

    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """stdout parsed as one JSON document."""
        return json.loads(self.stdout)

    def jsonl(self) -> list[dict[str, Any]]:
        """stdout parsed as JSON lines."""
        return [json.loads(line) for line in self.stdout.splitlines() if line.strip()]


def ancho(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> Result:
    """Run ``ancho ARGS`` as a user would (a separate process, real exit code)."""
    full_env = {**os.environ, **(env or {})}
    full_env.pop("ANCHO_STORE", None)
    if env and "ANCHO_STORE" in env:
        full_env["ANCHO_STORE"] = env["ANCHO_STORE"]
    proc = subprocess.run(
        [ANCHO, *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def run_id_of(result: Result) -> str:
    """The run id from ``run <id>``, the first line of stdout (stderr with --json)."""
    for stream in (result.stdout, result.stderr):
        for line in stream.splitlines():
            if line.startswith("run ") and len(line.split()) == 2:
                return line.split()[1]
    raise AssertionError(f"no run id in output:\n{result.stdout}\n{result.stderr}")


def moments(x: np.ndarray) -> dict[str, float]:
    """The contract's statistics computed directly with numpy (population skew/kurt)."""
    n = len(x)
    mean = float(x.mean())
    d = x - mean
    m2 = float((d**2).mean())
    return {
        "count": n,
        "mean": mean,
        "stddev": float(x.std(ddof=1)),
        "sem": float(x.std(ddof=1) / np.sqrt(n)),
        "min": float(x.min()),
        "max": float(x.max()),
        "skewness": float((d**3).mean() / m2**1.5),
        "kurtosis": float((d**4).mean() / m2**2 - 3.0),
    }


def write_spec(folder: Path, spec: dict[str, Any], name: str = "spec.json") -> Path:
    """Write a spec file and return its path."""
    path = folder / name
    path.write_text(json.dumps(spec))
    return path


class LiveServer:
    """A real ``ancho server`` subprocess on a free port (stopped with SIGTERM)."""

    def __init__(self, store: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.store, self.cwd = store, cwd
        self.env = {**os.environ, **(env or {})}
        for key in ("ANCHO_STORE", "ANCHO_SERVER", "ANCHO_TOKEN"):
            self.env.pop(key, None)
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.master = ""  # the Mesos master it uses (host:port of the embedded one)

    def start(self, timeout: float = 90) -> LiveServer:
        """Start and wait for ``ancho server listening on URL`` on stdout."""
        # The store URL (an admin password, with Cassandra) goes in the environment: a
        # command line is visible to every process of the machine (ps).
        self.proc = subprocess.Popen(
            [ANCHO, "server", "--bind", "127.0.0.1:0"],
            cwd=self.cwd, env={**self.env, "ANCHO_STORE": self.store}, stdout=subprocess.PIPE,
            stderr=(self.cwd / "server.log").open("a"), text=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            self.proc.kill()
            log = (self.cwd / "server.log").read_text()[-3000:]
            raise AssertionError(f"the server did not start: {line!r}\n{log}")
        self.url = line.split("listening on ", 1)[1].split()[0]
        self.master = line.rsplit("(master ", 1)[-1].strip().rstrip(")")
        return self

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait; the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise

    def request(self, method: str, path: str, token: str | None = None, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, Any, str]:  # fmt: skip
        """``(status, parsed JSON or None, raw text)`` of one API call."""
        import urllib.error
        import urllib.request

        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        if body is not None and not isinstance(body, bytes):
            req.add_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            status, text = exc.code, exc.read().decode()
        try:
            doc = json.loads(text)
        except ValueError:
            doc = None
        return status, doc, text


def probe_sandbox(tmp_path: Path, port: int, **executor: str) -> dict[str, Any]:
    """Outputs of tests/models/sandbox (what model code can reach) for one executor spec."""
    spec = {
        "model": {"source": str(MODELS / "sandbox"), "entrypoint": "model:simulate"},
        "parameters": {"port": port},
        "sequences": 3,
        "executor": executor,
    }
    run = ancho("run", str(write_spec(tmp_path, spec)), "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    rows = ancho("results", run_id_of(run), cwd=tmp_path).jsonl()
    assert all(r["status"] == "ok" for r in rows), rows
    outputs: dict[str, Any] = rows[0]["outputs"]
    return outputs
