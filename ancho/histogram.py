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
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .results import SequenceResult

__all__ = ["BINS", "Histogram", "bin_edges", "is_integral", "stream_histogram", "summary_range"]

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


# ---------------------------------------------------------------------------------------
# A run's histogram from its stored results, streamed (the web page's route, the Python
# API's ``Run``): ``stream_histogram(results, output, bins, summary_range(...))``
# ---------------------------------------------------------------------------------------

#: Values binned at a time (8 bytes each): the histogram's memory bound besides a page
#: of results.
CHUNK = 65_536


def summary_range(summary: Mapping[str, Any] | None, output: str) -> tuple[float, float] | None:
    """The output's finite ``(min, max)`` from a computed summary, if it has them."""
    stats = ((summary or {}).get("outputs") or {}).get(output) or {}
    lo, hi = stats.get("min"), stats.get("max")
    numbers = (int, float)
    if not (isinstance(lo, numbers) and isinstance(hi, numbers)):
        return None
    lo, hi = float(lo), float(hi)
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        return None
    return lo, hi


@dataclass(slots=True)
class _Scan:
    """One pass over the results: the output's finite values in chunks, and what is not."""

    finite: int = 0
    skipped: int = 0
    last: int = -1
    all_int: bool = True  # every value an int or a bool (whole-number bins)

    def chunks(self, results: Iterable[SequenceResult], output: str) -> Iterator[FloatArray]:
        """Arrays of at most :data:`CHUNK` finite values of ``output`` of ok sequences."""
        buf: list[float] = []
        for result in results:
            self.last = max(self.last, result.sequence)
            if result.status != "ok":
                continue
            value = result.outputs.get(output)
            try:
                if value is None:
                    raise TypeError("no value")
                buf.append(float(value))
                self.all_int = self.all_int and isinstance(value, int)
            except (TypeError, ValueError, OverflowError):  # no number: skipped
                self.skipped += 1
                continue
            if len(buf) >= CHUNK:
                yield self._finite(buf)
                buf = []
        if buf:
            yield self._finite(buf)

    def _finite(self, buf: list[float]) -> FloatArray:
        values = np.asarray(buf, dtype=np.float64)
        kept = values[np.isfinite(values)]
        self.finite += int(kept.size)
        self.skipped += int(values.size - kept.size)
        return kept


#: ``results(stop)``: the run's stored results in sequence order, those before ``stop``
#: only when it is not None (``Store.iter_results``).
Results = Callable[[int | None], Iterable["SequenceResult"]]


def stream_histogram(
    results: Results, output: str, bins: int, bounds: tuple[float, float] | None = None
) -> dict[str, Any]:
    """The histogram document of ``output`` (see the module's docstring).

    ``bounds`` is the summary's ``(min, max)``: with it, one pass bins the values, unless
    one falls outside it (or a non-integer voids the whole-number bins it assumed).
    Otherwise a first pass finds the range and the last sequence, and a second pass bins
    the same sequences (a value rewritten between the passes that falls outside the
    range is counted in the nearest end bin).
    """
    if bounds is not None:
        doc = _binned(results(None), output, bins, bounds, True, strict=True)
        if doc is not None:
            return doc
    scan = _Scan()
    lo, hi = math.inf, -math.inf
    for chunk in scan.chunks(results(None), output):
        if chunk.size:
            lo, hi = min(lo, float(chunk.min())), max(hi, float(chunk.max()))
    if scan.finite == 0:
        return _document(output, None, None, 0, scan.skipped)
    doc = _binned(results(scan.last + 1), output, bins, (lo, hi), scan.all_int, strict=False)
    assert doc is not None  # not strict: never None
    return doc


def _binned(
    results: Iterable[SequenceResult],
    output: str,
    bins: int,
    bounds: tuple[float, float],
    all_int: bool,
    *,
    strict: bool,
) -> dict[str, Any] | None:
    """One binning pass over ``bounds`` (the one histogram, :mod:`ancho.histogram`). A
    value outside them, or a non-integer in whole-number bins: None when ``strict``;
    else it counts in the nearest end bin."""
    lo, hi = bounds
    integral = is_integral(all_int, lo, hi)
    counts = Histogram(bin_edges(lo, hi, bins, integral), integral)
    scan = _Scan()
    for chunk in scan.chunks(results, output):
        if strict and integral and not scan.all_int:
            return None
        if chunk.size == 0:
            continue
        if float(chunk.min()) < lo or float(chunk.max()) > hi:
            if strict:
                return None
            chunk = np.clip(chunk, lo, hi)
        counts.add(chunk)
    if strict and integral and not scan.all_int:
        return None
    if scan.finite == 0:
        return _document(output, None, None, 0, scan.skipped)
    return _document(output, counts.edges, counts.counts, scan.finite, scan.skipped)


def _document(
    output: str,
    edges: FloatArray | None,
    counts: npt.NDArray[np.int64] | None,
    count: int,
    skipped: int,
) -> dict[str, Any]:
    """The JSON body (no bins when there is no finite value)."""
    return {
        "output": output,
        "bins": 0 if counts is None else len(counts),
        "edges": [] if edges is None else [float(e) for e in edges],
        "counts": [] if counts is None else [int(c) for c in counts],
        "count": count,
        "skipped": skipped,
    }
