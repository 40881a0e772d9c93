"""A trivial model: one uniform draw (a few microseconds), to measure Ancho's overhead."""

from __future__ import annotations

from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """One draw."""
    return {"u": rng.random()}
