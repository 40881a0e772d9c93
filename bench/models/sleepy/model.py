"""A model that computes for ``work_ms`` milliseconds per sequence (busy, not sleeping)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """Spin on the CPU for work_ms, then draw: like a real model, it uses its core."""
    deadline = time.perf_counter() + float(params.get("work_ms", 10.0)) / 1000.0
    x = 0.0
    while time.perf_counter() < deadline:
        x += 1.0
    return {"u": float(rng.random()), "acc": x}
