"""The model sandbox of process executors: model code in a confined child process.

The Docker containerizer adds the container's walls (tests/test_docker.py); here the
child process alone must keep model code off the network, away from the store's
credentials, and inside its memory.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from e2e import MODELS, REPO, ancho, probe_sandbox, run_id_of, write_spec

from ancho.sandbox.seccomp import build_filter


def test_model_code_has_no_network_and_no_credentials(listener: int, tmp_path: Path) -> None:
    seen = probe_sandbox(tmp_path, listener)
    assert seen["connected"] is False
    assert seen["no_new_privs"] == 1
    assert seen["uid"] != 0  # a root executor's model runs as a uid of its own
    assert seen["cap_eff"] in (0, 1 << 2)  # at most CAP_DAC_READ_SEARCH (ancho.sandbox)
    assert seen["sees_store"] is False
    assert seen["writes_cwd"] is True


def test_network_host_lets_model_code_connect(listener: int, tmp_path: Path) -> None:
    assert probe_sandbox(tmp_path, listener, network="host")["connected"] is True


def test_the_filter_refuses_sockets_but_keeps_the_pipe() -> None:
    code = (
        "import socket, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from ancho.sandbox.process import no_new_privs\n"
        "from ancho.sandbox.seccomp import install\n"
        "a, b = socket.socketpair()\n"
        "no_new_privs(); install()\n"
        "a.send(b'ok'); assert b.recv(2) == b'ok'\n"
        "for family in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):\n"
        "    try:\n"
        "        socket.socket(family)\n"
        "    except PermissionError:\n"
        "        continue\n"
        "    sys.exit(f'socket({family}) was allowed')\n"
        "print('confined')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=30)  # fmt: skip
    assert proc.returncode == 0 and proc.stdout.strip() == "confined", proc.stderr


def test_the_filter_is_well_formed() -> None:
    program = build_filter("x86_64")
    assert len(program) % 8 == 0 and len(program) // 8 <= 64
    with pytest.raises(Exception, match="architecture"):
        build_filter("sparc")


def test_a_model_over_its_memory_limit_fails_with_out_of_memory(tmp_path: Path) -> None:
    spec = {
        "model": {"source": str(MODELS / "hog"), "entrypoint": "model:simulate"},
        "parameters": {"mb": 1024},
        "sequences": 4,
        "max_attempts": 2,
        "resources": {"mem_mb": 300},
    }
    run = ancho("run", str(write_spec(tmp_path, spec)), cwd=tmp_path)
    assert run.code == 1, run.stderr
    rows = ancho("results", run_id_of(run), cwd=tmp_path).jsonl()
    assert [r["status"] for r in rows] == ["failed"] * 4
    message = rows[0]["error"]["message"]
    assert "out of memory" in message and "resources.mem_mb = 300" in message
