"""A trivial model with three outputs (float, int, bool), for store and summary benchmarks."""

from __future__ import annotations

from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float | int | bool]:
    """Three cheap outputs."""
    u = rng.random()
    return {"u": u, "k": int(u * 1000), "hit": u < 0.25}
