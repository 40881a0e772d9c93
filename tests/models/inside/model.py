"""Reports what a sequence sees of its container: user, memory and CPU limits."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np


def _number(path: str, field: int = 0) -> int:
    try:
        value = Path(path).read_text().split()[field]
    except (OSError, IndexError):
        return -1
    return -2 if value == "max" else int(value)


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, int | float]:
    """cgroup v1 files first, then v2 ones."""
    mem = _number("/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if mem == -1:
        mem = _number("/sys/fs/cgroup/memory.max")
    quota = _number("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
    period = _number("/sys/fs/cgroup/cpu/cpu.cfs_period_us")
    if quota == -1:
        quota, period = _number("/sys/fs/cgroup/cpu.max"), _number("/sys/fs/cgroup/cpu.max", 1)
    return {"uid": os.getuid(), "mem_limit": mem, "cpu_quota": quota, "cpu_period": period,
            "x": float(rng.random())}  # fmt: skip
