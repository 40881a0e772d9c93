"""Probes the sandbox from model code: network, user, writable places, capabilities."""

from __future__ import annotations

import ctypes
import os
import socket
from pathlib import Path
from typing import Any

import numpy as np


def _writes(path: Path) -> bool:
    try:
        path.write_text("x")
    except OSError:
        return False
    path.unlink()
    return True


def _no_new_privs() -> int:
    """PR_GET_NO_NEW_PRIVS (the sandbox denies /proc, even /proc/self)."""
    return int(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))


def _cap_eff() -> int:
    """The effective capabilities, from capget(2)."""
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)
    data = (ctypes.c_uint32 * 6)()
    if ctypes.CDLL(None).capget(header, data) != 0:
        return -1
    return int(data[0]) | int(data[3]) << 32


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, int | bool | float]:
    """Try to reach ``127.0.0.1:port`` and to write in, and outside, the working folder."""
    try:
        with socket.create_connection(("127.0.0.1", int(params["port"])), timeout=2):
            connected = True
    except OSError:
        connected = False
    return {
        "connected": connected,
        "uid": os.getuid(),
        "writes_cwd": _writes(Path.cwd() / "probe.txt"),
        "writes_root": _writes(Path("/probe.txt")),
        "writes_usr": _writes(Path("/usr/probe.txt")),
        "cap_eff": _cap_eff(),
        "no_new_privs": _no_new_privs(),
        "sees_store": "ANCHO_STORE" in os.environ,
        "x": float(rng.random()),
    }
