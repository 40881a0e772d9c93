"""A model whose setup always raises: the run must fail at once, not retry forever."""

from __future__ import annotations

from typing import Any


def setup(params: dict[str, Any]) -> None:
    """Fail like a missing data file would."""
    raise FileNotFoundError("parameters.csv not found")


def simulate(params: dict[str, Any], rng: Any, state: Any = None) -> dict[str, float]:
    """Never reached."""
    return {"x": 1.0}
