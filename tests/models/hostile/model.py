"""A model written to attack its sandbox (tests/test_hostile.py).

Every sequence tries each attack and returns, per attack, the errno that stopped it
(0 when the attack got through, -1 when it failed in some other way). The test
checks each against the mechanism meant to stop it. ``params["attack"] == "message"``
instead writes a crafted pickle to the executor's socket: decoded with pickle it would
create ``params["marker"]``.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
import sys
import time
from typing import Any


def _errno_of(action: Any) -> int:
    try:
        action()
    except OSError as exc:
        return exc.errno or -1
    except Exception:
        return -1
    return 0


def _read(path: str) -> None:
    with open(path, "rb") as fh:
        fh.read(64)


def _write(path: str) -> None:
    with open(path, "wb") as fh:
        fh.write(b"pwned")


def _ptrace() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.ptrace(16, 1, None, None) != 0:  # PTRACE_ATTACH to PID 1
        raise OSError(ctypes.get_errno(), "ptrace")


def _socket() -> None:
    socket.socket(socket.AF_INET, socket.SOCK_STREAM).close()


def _visible_processes() -> int:
    """How many other processes this one can address with a signal 0 (pids 2..4096).

    Its own threads (numpy's) answer too: ``pidfd_open`` tells them apart (EINVAL, or
    ENOENT on newer kernels, for a thread that does not lead its group).
    """
    found = 0
    for pid in range(2, 4096):
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        except PermissionError:
            pass  # it exists: even a refused signal tells as much
        try:
            os.close(os.pidfd_open(pid))
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.ENOENT):
                continue  # one of our own threads
        found += 1
    return found


def _fork_bomb() -> int:
    """Fork until refused; the errno of the refusal (0 if 2,000 forks went through)."""
    children = []
    code = 0
    try:
        for _ in range(2000):
            pid = os.fork()
            if pid == 0:
                time.sleep(60)
                os._exit(0)
            children.append(pid)
    except OSError as exc:
        code = exc.errno or -1
    for pid in children:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    return code


def _big_file(mb: int) -> None:
    block = b"x" * 2**20
    with open("big.bin", "wb") as fh:
        for _ in range(mb + 1):
            fh.write(block)
            fh.flush()
    os.remove("big.bin")


def _crafted_message(marker: str) -> None:
    """A pickle that runs ``open(marker, "w")`` when unpickled, framed as a message."""
    payload = (
        b"cbuiltins\nopen\n(V" + marker.encode() + b"\nVw\ntR."  # protocol 0
    )
    fd = int(sys.argv[1])  # the model process' end of the socketpair
    os.write(fd, struct.pack("!i", len(payload)) + payload)
    time.sleep(2)


def simulate(params: dict[str, Any], rng: Any) -> dict[str, int]:
    if params.get("attack") == "message":
        _crafted_message(params["marker"])
        return {"x": 0}
    return {
        "list_proc": _errno_of(lambda: os.listdir("/proc")),
        "read_environ": _errno_of(lambda: _read("/proc/1/environ")),
        "read_cmdline": _errno_of(lambda: _read("/proc/1/cmdline")),
        "read_mem": _errno_of(lambda: _read("/proc/1/mem")),
        "ptrace": _errno_of(_ptrace),
        "processes": _visible_processes(),
        "store_file": _errno_of(lambda: _read(params["store_file"])),
        "write_model": _errno_of(lambda: _write(os.path.join(params["model_dir"], "pwned"))),
        "write_tmp": _errno_of(lambda: _write("/tmp/ancho-pwned")),
        "other_sandbox": _errno_of(lambda: _read(params["other_sandbox"])),
        "write_scratch": _errno_of(lambda: _write("mine.txt")),
        "fork_bomb": _fork_bomb(),
        "big_file": _errno_of(lambda: _big_file(params["file_mb"])),
        "socket": _errno_of(_socket),
    }
