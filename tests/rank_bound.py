"""The contract's quantile check, shared by the sketch's tests and the recompute tests:
how far a reported quantile's ranks are from the exact rank."""

from __future__ import annotations

import math

import numpy as np


def rank_error(data: np.ndarray, value: float, q: float) -> int:
    """How far ``value``'s ranks in ``data`` (sorted) are from the exact rank of ``q``."""
    target = max(1, math.ceil(q * len(data)))
    low = int(np.searchsorted(data, value, side="left")) + 1
    high = int(np.searchsorted(data, value, side="right"))
    assert high >= low, f"{value} is not a value of the data"
    return 0 if low <= target <= high else min(abs(target - low), abs(target - high))
