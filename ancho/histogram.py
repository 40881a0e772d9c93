"""The one histogram of an output, drawn by the report (``ancho/report.py``) and served
to the web page (``ancho/server/web.py``): the same run gives the same bins and counts
in both.

Bins. Over the output's finite range ``[lo, hi]`` (the summary's ``min``/``max`` when it
has them, else the data's):

- an integral output (every value an int or a bool, ``lo`` and ``hi`` whole) gets bins
  centred on whole numbers, ``ceil((hi - lo + 1) / bins)`` wide, so no bin straddles
  two values unevenly;
- any other output gets ``bins`` equal-width bins from ``lo`` to ``hi`` (numpy's edges),
  computed without overflow for ranges wider than the largest float, and fewer bins
  when the range holds fewer distinct floats than that;
- a single value ``v`` gets one bin ``[v - 0.5, v + 0.5]``.

Counting. Bin ``i`` holds ``edges[i] <= v < edges[i + 1]``; the last one also holds its
right edge. Values outside the edges are only counted in ``outside``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

__all__ = ["BINS", "Histogram", "bin_edges", "is_integral"]

FloatArray = npt.NDArray[np.float64]

#: Bins when the caller does not say.
BINS = 40


def is_integral(all_int: bool, lo: float, hi: float) -> bool:
    """Whether an output binned over ``[lo, hi]`` gets whole-number bins."""
    return all_int and float(lo).is_integer() and float(hi).is_integer()


def bin_edges(lo: float, hi: float, bins: int = BINS, integral: bool = False) -> FloatArray:
    """The edges of the bins over ``[lo, hi]`` (see the module docstring)."""
    if integral:
        span = hi - lo + 1
        width = max(1.0, math.ceil(span / bins))
        count = max(1, math.ceil(span / width))
        return lo - 0.5 + width * np.arange(count + 1, dtype=np.float64)
    if hi <= lo:
        return np.array([lo - 0.5, lo + 0.5], dtype=np.float64)
    if math.isfinite(hi - lo):
        edges = np.linspace(lo, hi, bins + 1, dtype=np.float64)
    else:  # lo * (1 - t) + hi * t cannot overflow where hi - lo does
        t = np.linspace(0.0, 1.0, bins + 1)
        edges = lo * (1.0 - t) + hi * t
        edges[0], edges[-1] = lo, hi
    return np.unique(edges)  # a tiny range: fewer distinct floats than bins


@dataclass(slots=True)
class Histogram:
    """Counts of values in fixed bins, filled chunk by chunk."""

    edges: FloatArray
    integral: bool = False
    counts: npt.NDArray[np.int64] = field(init=False)
    outside: int = 0

    def __post_init__(self) -> None:
        self.counts = np.zeros(self.edges.size - 1, dtype=np.int64)

    def add(self, values: FloatArray) -> None:
        """Count a chunk of finite values."""
        inside = (values >= self.edges[0]) & (values <= self.edges[-1])
        self.outside += int(values.size - np.count_nonzero(inside))
        index = np.searchsorted(self.edges, values[inside], side="right") - 1
        index = np.minimum(index, self.counts.size - 1)
        self.counts += np.bincount(index, minlength=self.counts.size).astype(np.int64)
