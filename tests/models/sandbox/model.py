"""Probes the sandbox from model code: network, user, writable places, capabilities."""

from __future__ import annotations

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


def _status(field: str) -> str:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return line.split(":", 1)[1].strip()
    return ""


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
        "cap_eff": int(_status("CapEff") or "-1", 16),
        "no_new_privs": int(_status("NoNewPrivs") or "-1"),
        "sees_store": "ANCHO_STORE" in os.environ,
        "x": float(rng.random()),
    }
