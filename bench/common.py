"""Helpers shared by the benchmark scripts."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ANCHO = str(Path(sys.executable).parent / "ancho")


def new_user(admin_url: str, prefix: str = "bench") -> str:
    """Create a fresh Ancho user on the admin store; return the user's store URL."""
    name = f"{prefix}_{int(time.time() * 1000) % 10**9}"
    out = subprocess.run([ANCHO, "user", "add", name, "--store", admin_url],
                         capture_output=True, text=True, check=True)  # fmt: skip
    url: str = json.loads(out.stdout)["store"]
    return url
