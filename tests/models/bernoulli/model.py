"""One Bernoulli(p) trial per sequence, and a normal draw: for precision targets."""

from __future__ import annotations

from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float | bool]:
    """``hit``: a success with probability ``p``; ``x``: a standard normal draw."""
    return {"hit": bool(rng.random() < float(params["p"])), "x": float(rng.standard_normal())}
