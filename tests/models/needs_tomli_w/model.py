"""A model with a requirement that Ancho itself does not install (tomli-w)."""

from __future__ import annotations

from typing import Any

import numpy as np
import tomli_w


def simulate(params: dict[str, Any], rng: np.random.Generator) -> dict[str, float | int]:
    """Use the requirement, so a missing one fails the import."""
    text = tomli_w.dumps({"x": float(rng.random())})
    return {"x": float(text.split("=")[1]), "chars": len(text)}
