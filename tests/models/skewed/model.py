"""Cheap, skewed outputs with ties: to hold merged summaries against Spark's."""

from __future__ import annotations

from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float | int | bool]:
    """``y`` lognormal, ``k`` Poisson (many ties), ``b`` a coin."""
    return {"y": float(rng.lognormal(0.0, 1.0)), "k": int(rng.poisson(3.0)),
            "b": bool(rng.random() < 0.5)}  # fmt: skip
