"""Allocates (and touches) ``mb`` megabytes per sequence and never lets go."""

from __future__ import annotations

from typing import Any

import numpy as np

_held: list[np.ndarray] = []


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """Hold another ``mb`` MB of touched memory, then return one draw."""
    _held.append(np.ones(int(params["mb"]) * 2**20 // 8))
    return {"x": float(rng.random())}
