"""Hostile model code, under both containerizers: every attempt fails, and says why.

tests/models/hostile tries each attack in every sequence and reports the errno that
stopped it; each is checked against the mechanism meant to stop it (ancho.sandbox):
Landlock (EACCES) for files and /proc, seccomp (EPERM, EACCES) for ptrace and sockets,
the PID namespace (no other process to address), rlimits (EAGAIN for the fork bomb,
EFBIG for the big file). A model that writes a pickle to the executor's socket fails
its run with "model process sent an invalid message" and the pickle never runs. The
executor goes on and the next run on the same store is untouched. The summary and
requirements attacks are in tests/test_requirements_sandbox.py and
tests/test_custom_summary_sandbox.py.
"""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2e import EXAMPLES, MODELS, ancho, run_id_of, write_spec

HOSTILE = MODELS / "hostile"
FILE_MB = 8
SANDBOX_ENV = {"ANCHO_SANDBOX_MAX_FILE_MB": str(FILE_MB)}

#: attack -> the errnos that may stop it (Docker adds a read-only root and fewer mounts).
EXPECTED: dict[str, set[int]] = {
    "list_proc": {errno.EACCES},
    "read_environ": {errno.EACCES},
    "read_cmdline": {errno.EACCES},
    "read_mem": {errno.EACCES},
    "ptrace": {errno.EPERM},
    "processes": {0},  # no other process is even addressable
    "store_file": {errno.EACCES},
    "write_model": {errno.EACCES, errno.EROFS},
    "write_tmp": {errno.EACCES, errno.EROFS},
    "other_sandbox": {errno.EACCES, errno.ENOENT},  # ENOENT: not even in the container
    "write_scratch": {0},  # its own scratch folder is writable
    "fork_bomb": {errno.EAGAIN},
    "big_file": {errno.EFBIG},
    "socket": {errno.EACCES},
}


@pytest.fixture(params=["process", "docker"])
def containerizer(request: pytest.FixtureRequest) -> str:
    if request.param == "docker":
        request.getfixturevalue("executor_image")
    return str(request.param)


def _run(tmp_path: Path, spec: dict[str, Any], name: str) -> tuple[int, str, list[Any]]:
    run = ancho("run", str(write_spec(tmp_path, spec, name)), cwd=tmp_path, env=SANDBOX_ENV)
    run_id = run_id_of(run)
    rows = ancho("results", run_id, cwd=tmp_path).jsonl()
    return run.code, run.stdout + run.stderr, rows


def test_every_attack_on_the_sandbox_fails(containerizer: str, tmp_path: Path) -> None:
    # Another run first: its executor's sandbox is the one the hostile model goes for.
    first = ancho("run", str(EXAMPLES / "pi"), "--sequences", "50", cwd=tmp_path)
    assert first.code == 0, first.stderr
    other = next((tmp_path / ".ancho").rglob("executors/*/runs/latest/stdout"))
    spec = {
        "model": {"source": str(HOSTILE), "entrypoint": "model:simulate"},
        "parameters": {
            "store_file": str(tmp_path / ".ancho" / "ancho.db"),
            "model_dir": str(HOSTILE),
            "other_sandbox": str(other),
            "file_mb": FILE_MB,
        },
        "sequences": 2,
        "executor": {"containerizer": containerizer},
    }
    code, out, rows = _run(tmp_path, spec, "hostile.json")
    assert code == 0, out
    assert [r["status"] for r in rows] == ["ok", "ok"], rows
    for row in rows:
        got = row["outputs"]
        wrong = {k: got[k] for k, allowed in EXPECTED.items() if got[k] not in allowed}
        assert not wrong, f"attacks that were not stopped as expected: {wrong}"
    assert not (HOSTILE / "pwned").exists()


def test_an_unsafe_message_fails_the_run_and_never_runs(containerizer: str,
                                                        tmp_path: Path) -> None:  # fmt: skip
    marker = tmp_path / "PWNED"
    spec = {
        "model": {"source": str(HOSTILE), "entrypoint": "model:simulate"},
        "parameters": {"attack": "message", "marker": str(marker)},
        "sequences": 4,
        "executor": {"containerizer": containerizer},
    }
    code, out, rows = _run(tmp_path, spec, "message.json")
    assert code == 1
    assert "model process sent an invalid message" in out
    assert "Traceback" not in out
    assert not marker.exists()  # the pickle was never unpickled
    assert all(r["status"] == "failed" for r in rows)
    # The store and the next run are untouched.
    after = ancho("run", str(EXAMPLES / "pi"), "--sequences", "100", "--json", cwd=tmp_path)
    assert after.code == 0, after.stderr
    assert after.json()["ok"] == 100


_CONFINE = """
import json, os, sys
from pathlib import Path
from ancho.sandbox import Profile, SandboxUnavailable, confine
os.makedirs("/tmp/s", exist_ok=True)
try:
    weaker = confine(Profile(write=[Path("/tmp/s")]), allow_weaker=sys.argv[1] == "allow")
except SandboxUnavailable as exc:
    print(json.dumps({"refused": str(exc)}))
    sys.exit(0)
try:
    open("/etc/passwd").read()
    passwd = "read"
except OSError as exc:
    passwd = exc.errno
print(json.dumps({"weaker": weaker, "passwd": passwd}))
"""


def test_a_missing_mechanism_is_refused_unless_the_operator_allows_it(executor_image: str) -> None:
    # Docker's default seccomp profile refuses user namespaces: a real missing mechanism.
    def confine_in_docker(mode: str) -> dict[str, Any]:
        proc = subprocess.run(
            ["docker", "run", "--rm", "--user", "1000", "--cap-drop", "ALL", "--read-only",
             "--tmpfs", "/tmp", "--entrypoint", "python3", executor_image, "-c", _CONFINE, mode],
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        return result

    refused = confine_in_docker("refuse")
    assert refused["refused"].startswith("process isolation: unshare failed")
    allowed = confine_in_docker("allow")
    assert [w.split(" ")[0:2] for w in allowed["weaker"]] == [["process", "isolation"]]
    assert allowed["passwd"] == errno.EACCES  # the rest of the sandbox still holds
