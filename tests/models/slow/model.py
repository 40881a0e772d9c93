"""A model that sleeps ``sleep_s`` per sequence (for kill and progress tests)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """Sleep, then draw."""
    time.sleep(float(params.get("sleep_s", 0.05)))
    return {"u": float(rng.random())}
