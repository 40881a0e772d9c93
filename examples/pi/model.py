"""Estimate pi: throw points in the unit square, count those inside the quarter circle.

Each sequence throws ``samples`` points; its ``pi`` output is ``4 * inside / samples``.
Over many sequences the mean of ``pi`` converges to pi with standard error
``4 * sqrt(p * (1 - p) / samples) / sqrt(sequences)``, ``p = pi / 4``.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float | int]:
    """One sequence: ``samples`` random points."""
    samples = int(params.get("samples", 1000))
    xy = rng.random((2, samples))
    inside = int(np.count_nonzero(xy[0] ** 2 + xy[1] ** 2 <= 1.0))
    return {"pi": 4.0 * inside / samples, "inside": inside}
