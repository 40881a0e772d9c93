"""A model whose sequences fail with probability ``p_fail`` (decided by the rng)."""

from __future__ import annotations

from typing import Any

import numpy as np


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float]:
    """Raise for some sequences; otherwise one standard normal draw."""
    if rng.random() < float(params.get("p_fail", 0.1)):
        raise ValueError("unlucky draw")
    return {"x": float(rng.standard_normal())}
