"""Mergeable partial summaries: what an executor computes for each fixed block of
sequence indices, and what the scheduler merges, in index order, into a run's summary.

Per output, an :class:`OutputPartial` holds

- ``count`` (values seen) and the non-finite counts ``nan``, ``posinf``, ``neginf``;
- over the finite values: their number ``n``, ``mean``, the central moment sums
  ``m2``, ``m3``, ``m4`` (``sum((x - mean)**k)``), ``minimum`` and ``maximum``, merged
  with the pairwise update formulas of Chan, Golub and LeVeque (2nd moment) and Pébay
  (3rd and 4th; "Formulas for robust, one-pass parallel computation of covariances and
  arbitrary-order statistical moments", Sandia report SAND2008-6212);
- a :class:`QuantileSketch` of the non-NaN values (infinities included).

Determinism. A block's partial depends only on the block's values, and merging is a
fixed sequence of floating-point operations, so merging the same blocks in the same
(index) order gives bitwise the same result, whatever executors, batches or retries
produced them: :class:`BlockPartials` keeps one partial per block (a retried block
replaces its partial) and merges in index order.

The quantile sketch is a deterministic Munro-Paterson compactor hierarchy. Level ``h``
holds sorted values of weight ``2**h``; when a level holds ``2k`` values or more, an even
number of them is compacted: of each adjacent pair one is kept (alternately the first
and the second, per level) and moved up a level with twice the weight. For any value
``x`` one compaction at level ``h`` moves the count of values ``<= x`` by at most
``2**h``, and level ``h`` compacts at most ``n / (2k 2**h)`` times, so with ``H`` levels
that compact the rank error is at most ``H n / (2k)``. :meth:`QuantileSketch.for_count`
picks ``k`` so that this is within ``max(1, n / accuracy)`` for every ``n`` up to the
run's sequence count, and no compaction happens at all up to ``accuracy`` values
(quantiles are then exact): the contract's guarantee ("Stored results and summary").
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["DEFAULT_ACCURACY", "BlockPartials", "OutputPartial", "QuantileSketch"]

#: Quantiles are exact up to this many values, and within ``count / accuracy`` ranks beyond.
DEFAULT_ACCURACY = 100_000

Floats = npt.NDArray[np.float64]


def _pack(values: Floats) -> str:
    return base64.b64encode(values.astype("<f8").tobytes()).decode("ascii")


def _unpack(text: str) -> Floats:
    return np.frombuffer(base64.b64decode(text), dtype="<f8").astype(np.float64)


@dataclass(slots=True)
class QuantileSketch:
    """Sorted, weighted values from which quantiles are read (see the module docstring).

    ``k``: half the size at which a level compacts. ``levels[h]``: sorted values of
    weight ``2**h``. ``parities[h]``: which of each pair the next compaction at ``h``
    keeps (0 the first, 1 the second).
    """

    k: int
    levels: list[Floats] = field(default_factory=list)
    parities: list[int] = field(default_factory=list)

    @classmethod
    def for_count(cls, max_count: int, accuracy: int = DEFAULT_ACCURACY) -> QuantileSketch:
        """A sketch whose quantiles are exact up to ``accuracy`` values and within
        ``max(1, n / accuracy)`` ranks for every ``n <= max_count``."""
        if accuracy < 1 or max_count < 0:
            raise ValueError("accuracy must be >= 1 and max_count >= 0")
        k = accuracy // 2 + 1  # 2k > accuracy: nothing compacts up to `accuracy` values
        while True:
            levels = 1 + max(0, math.ceil(math.log2(max(1.0, max_count / (2 * k)))))
            needed = max(k, math.ceil(levels * accuracy / 2))
            if needed == k:
                return cls(k)
            k = needed

    @property
    def weight(self) -> int:
        """The number of values the sketch stands for."""
        return sum(len(level) << h for h, level in enumerate(self.levels))

    def add(self, values: Floats) -> None:
        """Add raw (weight 1) values; NaN must have been removed."""
        self._merge_level(0, np.sort(np.asarray(values, dtype=np.float64)))

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s values, level by level (``other`` is unchanged)."""
        for h, level in enumerate(other.levels):
            if len(level):
                self._merge_level(h, level)

    def _merge_level(self, h: int, values: Floats) -> None:
        while len(self.levels) <= h:
            self.levels.append(np.empty(0))
            self.parities.append(0)
        if len(values):
            merged = np.concatenate([self.levels[h], values])
            self.levels[h] = np.sort(merged, kind="stable")
        level = self.levels[h]
        if len(level) < 2 * self.k:
            return
        even = len(level) - len(level) % 2
        promoted = level[self.parities[h] : even : 2].copy()
        self.parities[h] ^= 1
        self.levels[h] = level[even:].copy()
        self._merge_level(h + 1, promoted)

    def quantiles(self, probabilities: Sequence[float]) -> list[float | None]:
        """For each ``q``, the value of (approximate) rank ``max(1, ceil(q * weight))``:
        the smallest value with at least that many values at or below it."""
        total = self.weight
        if total == 0:
            return [None for _ in probabilities]
        values = np.concatenate(self.levels)
        weights = np.concatenate(
            [np.full(len(level), 1 << h, dtype=np.int64) for h, level in enumerate(self.levels)]
        )
        order = np.argsort(values, kind="stable")
        values, cumulative = values[order], np.cumsum(weights[order])
        out: list[float | None] = []
        for q in probabilities:
            rank = min(total, max(1, math.ceil(q * total)))
            out.append(float(values[int(np.searchsorted(cumulative, rank))]))
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form that :meth:`from_dict` restores bit for bit."""
        return {"k": self.k, "levels": [_pack(level) for level in self.levels],
                "parities": list(self.parities)}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QuantileSketch:
        return cls(int(data["k"]), [_unpack(t) for t in data["levels"]],
                   [int(p) for p in data["parities"]])  # fmt: skip


@dataclass(slots=True)
class OutputPartial:
    """One output's mergeable statistics (see the module docstring)."""

    sketch: QuantileSketch
    count: int = 0
    nan: int = 0
    posinf: int = 0
    neginf: int = 0
    n: int = 0  # finite values
    mean: float = 0.0
    m2: float = 0.0
    m3: float = 0.0
    m4: float = 0.0
    minimum: float = math.inf
    maximum: float = -math.inf

    @classmethod
    def of(cls, values: Iterable[float] | Floats, sketch: QuantileSketch) -> OutputPartial:
        """The partial of ``values`` (bools count as 0/1), with ``sketch`` (empty) to fill."""
        x = np.asarray(values, dtype=np.float64).ravel()
        finite = x[np.isfinite(x)]
        nan = int(np.isnan(x).sum())
        posinf = int(np.isposinf(x).sum())
        partial = cls(sketch, count=len(x), nan=nan, posinf=posinf,
                      neginf=len(x) - len(finite) - nan - posinf, n=len(finite))  # fmt: skip
        if len(finite):
            mean = float(np.mean(finite))
            d = finite - mean
            d2 = d * d
            partial.mean = mean
            partial.m2 = float(np.sum(d2))
            partial.m3 = float(np.sum(d2 * d))
            partial.m4 = float(np.sum(d2 * d2))
            partial.minimum, partial.maximum = float(finite.min()), float(finite.max())
        sketch.add(x[~np.isnan(x)])
        return partial

    def merge(self, other: OutputPartial) -> None:
        """Add ``other`` (a later block) into this partial."""
        self.count += other.count
        self.nan += other.nan
        self.posinf += other.posinf
        self.neginf += other.neginf
        self.sketch.merge(other.sketch)
        na, nb = self.n, other.n
        if nb == 0:
            return
        if na == 0:
            self.n, self.mean, self.m2, self.m3, self.m4 = (
                nb,
                other.mean,
                other.m2,
                other.m3,
                other.m4,
            )
            self.minimum, self.maximum = other.minimum, other.maximum
            return
        n = na + nb
        delta = other.mean - self.mean
        dn = delta / n
        dn2 = dn * dn
        term = delta * dn * na * nb
        m2a, m3a = self.m2, self.m3
        self.m4 += (
            other.m4 + term * dn2 * (na * na - na * nb + nb * nb)
            + 6.0 * dn2 * (na * na * other.m2 + nb * nb * m2a)
            + 4.0 * dn * (na * other.m3 - nb * m3a)
        )  # fmt: skip
        self.m3 += other.m3 + term * dn * (na - nb) + 3.0 * dn * (na * other.m2 - nb * m2a)
        self.m2 += other.m2 + term
        self.mean += nb * dn
        self.n = n
        self.minimum = min(self.minimum, other.minimum)
        self.maximum = max(self.maximum, other.maximum)

    # ---------------------------------------------------------------- statistics
    @property
    def variance(self) -> float | None:
        """Sample variance of the finite values (None below two)."""
        return self.m2 / (self.n - 1) if self.n >= 2 else None

    @property
    def skewness(self) -> float | None:
        """Population skewness g1, as Spark SQL's ``skewness`` (None when the variance is 0)."""
        if self.n == 0 or self.m2 <= 0.0:
            return None
        return math.sqrt(self.n) * self.m3 / float(self.m2**1.5)

    @property
    def kurtosis(self) -> float | None:
        """Population excess kurtosis g2, as Spark SQL's ``kurtosis``."""
        if self.n == 0 or self.m2 <= 0.0:
            return None
        return self.n * self.m4 / (self.m2 * self.m2) - 3.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (floats round-trip exactly through ``json``)."""
        data: dict[str, Any] = {name: getattr(self, name) for name in _FIELDS}
        for name in ("minimum", "maximum"):  # JSON has no infinities
            data[name] = None if math.isinf(data[name]) else data[name]
        data["sketch"] = self.sketch.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputPartial:
        fields = {name: data[name] for name in _FIELDS}
        fields["minimum"] = math.inf if fields["minimum"] is None else fields["minimum"]
        fields["maximum"] = -math.inf if fields["maximum"] is None else fields["maximum"]
        return cls(QuantileSketch.from_dict(data["sketch"]), **fields)


_FIELDS = ("count", "nan", "posinf", "neginf", "n", "mean", "m2", "m3", "m4", "minimum",
           "maximum")  # fmt: skip


@dataclass(slots=True)
class BlockPartials:
    """A run's partials, one per block of ``block_size`` sequence indices, merged in
    index order. A block put again (a retry) replaces the earlier partial."""

    block_size: int
    max_count: int
    accuracy: int = DEFAULT_ACCURACY
    blocks: dict[int, dict[str, OutputPartial]] = field(default_factory=dict)

    def sketch(self) -> QuantileSketch:
        """An empty sketch sized for this run."""
        return QuantileSketch.for_count(self.max_count, self.accuracy)

    def block_of(self, outputs: Mapping[str, Sequence[float] | Floats]) -> dict[str, OutputPartial]:
        """The partials of one block's values, per output."""
        return {name: OutputPartial.of(values, self.sketch()) for name, values in outputs.items()}

    def put(self, block: int, partials: Mapping[str, OutputPartial]) -> None:
        self.blocks[block] = dict(partials)

    def merged(self, upto: int | None = None) -> dict[str, OutputPartial]:
        """Every block (or the blocks below ``upto``) merged in index order, per output."""
        result: dict[str, OutputPartial] = {}
        for block in sorted(self.blocks):
            if upto is not None and block >= upto:
                break
            for name, partial in self.blocks[block].items():
                into = result.setdefault(name, OutputPartial(self.sketch()))
                into.merge(partial)
        return result
