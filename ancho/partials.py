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
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from .results import SequenceResult

__all__ = [
    "DEFAULT_ACCURACY",
    "QUANTILES",
    "Z95",
    "BlockPartial",
    "OutputPartial",
    "QuantileSketch",
    "RunPartials",
    "block_size",
    "live_statistics",
    "statistics",
]

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
    keeps (0 the first, 1 the second). Values added at level 0 wait unsorted in
    ``pending`` until the level reaches ``2k`` or is read: sorting once per compaction
    instead of once per block keeps a run's merge linear. The compactions happen at the
    same sizes either way, so the result depends only on the order of the adds.
    """

    k: int
    levels: list[Floats] = field(default_factory=list)
    parities: list[int] = field(default_factory=list)
    pending: list[Floats] = field(default_factory=list)
    pending_n: int = 0

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
        return self.pending_n + sum(len(level) << h for h, level in enumerate(self.levels))

    def add(self, values: Floats) -> None:
        """Add raw (weight 1) values; NaN must have been removed. -0.0 is kept as 0.0, so
        equal values are equal bits and the order of the adds cannot show."""
        self._add_level0(np.asarray(values, dtype=np.float64) + 0.0)

    def merge(self, other: QuantileSketch) -> None:
        """Add ``other``'s values, level by level (``other`` is unchanged)."""
        for values in other.pending:
            self._add_level0(values)
        for h, level in enumerate(other.levels):
            if len(level) == 0:
                continue
            if h == 0:
                self._add_level0(level)
            else:
                self._merge_level(h, level)

    def _add_level0(self, values: Floats) -> None:
        if len(values) == 0:
            return
        self.pending.append(values)
        self.pending_n += len(values)
        level0 = len(self.levels[0]) if self.levels else 0
        if level0 + self.pending_n >= 2 * self.k:
            self.flush()

    def flush(self) -> None:
        """Sort the values waiting at level 0 into it (compacting if it is full)."""
        if not self.pending:
            return
        values = np.concatenate(self.pending)
        self.pending, self.pending_n = [], 0
        self._merge_level(0, values)

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
        """For each ``q``, the smallest value whose weight at or below it reaches the rank
        ``max(1, ceil(q * weight))``. Each level is searched by bisection, so reading
        costs ``O(levels**2 log k)`` per quantile, not a sort of everything held."""
        self.flush()
        total = self.weight
        if total == 0:
            return [None for _ in probabilities]
        levels = [(h, level) for h, level in enumerate(self.levels) if len(level)]

        def at_or_below(value: float) -> int:
            return sum(int(np.searchsorted(level, value, side="right")) << h
                       for h, level in levels)  # fmt: skip

        out: list[float | None] = []
        for q in probabilities:
            rank = min(total, max(1, math.ceil(q * total)))
            best = math.inf
            for _, level in levels:
                lo, hi = 0, len(level)  # the first index whose value reaches the rank
                while lo < hi:
                    mid = (lo + hi) // 2
                    if at_or_below(float(level[mid])) >= rank:
                        hi = mid
                    else:
                        lo = mid + 1
                if lo < len(level):
                    best = min(best, float(level[lo]))
            out.append(best)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form that :meth:`from_dict` restores bit for bit."""
        self.flush()
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

    def merge(self, other: OutputPartial, *, sketch: bool = True) -> None:
        """Add ``other`` (a later block) into this partial; ``sketch=False`` leaves the
        quantile sketch alone (live statistics need only the moments)."""
        self.count += other.count
        self.nan += other.nan
        self.posinf += other.posinf
        self.neginf += other.neginf
        if sketch:
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

    def moments(self) -> OutputPartial:
        """A copy of the counts and moments, with an empty sketch."""
        copy = OutputPartial(QuantileSketch(self.sketch.k))
        copy.merge(self, sketch=False)
        return copy

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


def block_size(sequences: int) -> int:
    """The fixed block of a run of ``sequences``: about a thousand blocks per run, between
    8 and 10,000 sequences each (a block's partial costs the executor, the store and the
    scheduler about as much as a few trivial sequences, so small runs do not get blocks
    of one). A function of the run's size alone, so executors, the scheduler and a
    restarted scheduler agree without storing it."""
    return max(8, min(10_000, math.ceil(sequences / 1024)))


@dataclass(slots=True)
class BlockPartial:
    """One block's partial: its ok and failed sequences, and per output the partial of
    its ok values."""

    ok: int
    failed: int
    outputs: dict[str, OutputPartial]

    @classmethod
    def of(cls, ok: int, failed: int, values: Mapping[str, Sequence[float] | Floats],
           sketch: Callable[[], QuantileSketch]) -> BlockPartial:  # fmt: skip
        """The partial of a block's ok ``values`` per output; ``sketch()`` gives an empty
        sketch sized for the run."""
        outputs = {name: OutputPartial.of(v, sketch()) for name, v in sorted(values.items())}
        return cls(ok, failed, outputs)

    @classmethod
    def of_rows(cls, rows: Sequence[SequenceResult],
                sketch: Callable[[], QuantileSketch]) -> BlockPartial:  # fmt: skip
        """The partial of a block's stored rows, in index order: its ok values per output
        (bools as 0/1). The executor and the scheduler's fallback both make it so."""
        ok = [r for r in rows if r.status == "ok"]
        names = {name for r in ok for name in r.outputs}
        values = {n: [float(r.outputs[n]) for r in ok if n in r.outputs] for n in names}
        return cls.of(len(ok), len(rows) - len(ok), values, sketch)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "failed": self.failed,
                "outputs": {k: v.to_dict() for k, v in self.outputs.items()}}  # fmt: skip

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BlockPartial:
        outputs = {str(k): OutputPartial.from_dict(v) for k, v in data["outputs"].items()}
        return cls(int(data["ok"]), int(data["failed"]), outputs)


@dataclass(slots=True)
class RunPartials:
    """A run's block partials, merged into a contiguous prefix as they arrive.

    ``put`` keeps a block until every block before it is in; :meth:`advance` then merges
    it into the prefix, in index order, one block at a time. A block put again before it
    is merged replaces the earlier partial; one put after it was merged is a repeat of a
    block already counted (a retried batch recomputes the same rows) and is ignored.
    """

    sequences: int
    block_size: int
    accuracy: int = DEFAULT_ACCURACY
    #: Blocks 0 .. ``merged_blocks - 1`` are in ``prefix``.
    merged_blocks: int = 0
    prefix: BlockPartial = field(default_factory=lambda: BlockPartial(0, 0, {}))
    waiting: dict[int, BlockPartial] = field(default_factory=dict)

    @classmethod
    def for_run(cls, sequences: int, accuracy: int = DEFAULT_ACCURACY) -> RunPartials:
        return cls(sequences, block_size(sequences), accuracy)

    @property
    def blocks(self) -> int:
        """How many blocks the run has."""
        return math.ceil(self.sequences / self.block_size)

    def block_range(self, block: int) -> tuple[int, int]:
        """The sequences ``start..stop-1`` of a block."""
        start = block * self.block_size
        return start, min(start + self.block_size, self.sequences)

    @property
    def merged_sequences(self) -> int:
        """The end of the merged prefix: sequences ``0..k-1`` are in it."""
        return min(self.merged_blocks * self.block_size, self.sequences)

    def sketch(self) -> QuantileSketch:
        """An empty sketch sized for this run."""
        return QuantileSketch.for_count(self.sequences, self.accuracy)

    def put(self, block: int, partial: BlockPartial) -> None:
        if self.merged_blocks <= block < self.blocks:
            self.waiting[block] = partial

    def missing(self, upto_block: int | None = None) -> list[int]:
        """Blocks below ``upto_block`` (default: all) neither merged nor waiting."""
        end = self.blocks if upto_block is None else upto_block
        return [b for b in range(self.merged_blocks, end) if b not in self.waiting]

    def advance(self) -> Iterator[int]:
        """Merge the next blocks that are in, one by one; yield the prefix's end
        (``merged_sequences``) after each. Stopping the iteration stops the merging."""
        while self.merged_blocks in self.waiting:
            block = self.waiting.pop(self.merged_blocks)
            prefix = self.prefix
            prefix.ok += block.ok
            prefix.failed += block.failed
            for name, partial in block.outputs.items():
                into = prefix.outputs.get(name)
                if into is None:
                    into = prefix.outputs[name] = OutputPartial(self.sketch())
                into.merge(partial)
            self.merged_blocks += 1
            yield self.merged_sequences

    def live(self) -> BlockPartial:
        """Counts and moments of everything in so far (prefix and waiting blocks)."""
        total = BlockPartial(self.prefix.ok, self.prefix.failed,
                             {k: v.moments() for k, v in self.prefix.outputs.items()})  # fmt: skip
        for block in sorted(self.waiting):
            partial = self.waiting[block]
            total.ok += partial.ok
            total.failed += partial.failed
            for name, output in partial.outputs.items():
                into = total.outputs.get(name)
                if into is None:
                    into = total.outputs[name] = OutputPartial(QuantileSketch(1))
                into.merge(output, sketch=False)
        return total


# --------------------------------------------------------------------- the summary
QUANTILES: tuple[float, ...] = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)

#: 97.5% quantile of the standard normal: a 95% interval is mean +- Z95 sem.
Z95 = 1.959964


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _clean(p: OutputPartial) -> bool:
    """Whether every value is finite (else the moments are NaN or infinite: null)."""
    return p.nan == 0 and p.posinf == 0 and p.neginf == 0


def _sem(p: OutputPartial) -> float | None:
    variance = p.variance
    if variance is None or not _clean(p):
        return None
    return math.sqrt(max(variance, 0.0)) / math.sqrt(p.n)


def statistics(p: OutputPartial | None) -> dict[str, Any]:
    """One output's summary (DESIGN.md, "Stored results and summary") from its merged
    partial. Non-finite statistics are null, as in the Spark job (``ancho.summary``):
    a NaN or infinite value makes the moments null; ``min``/``max`` skip NaN; the
    quantiles rank the non-NaN values, infinities included (an infinite one is null)."""
    if p is None or p.count == 0:
        return {"count": 0 if p is None else p.count, "mean": None, "stddev": None,
                "sem": None, "min": None, "max": None, "skewness": None, "kurtosis": None,
                "quantiles": {str(q): None for q in QUANTILES}}  # fmt: skip
    clean = _clean(p)
    variance = p.variance if clean else None
    stddev = None if variance is None else math.sqrt(max(variance, 0.0))
    values = p.sketch.quantiles(QUANTILES)
    return {
        "count": p.count,
        "mean": p.mean if clean and p.n else None,
        "stddev": _finite(stddev),
        "sem": _finite(_sem(p)),
        "min": None if p.neginf or not p.n else p.minimum,
        "max": None if p.posinf or not p.n else p.maximum,
        "skewness": _finite(p.skewness) if clean else None,
        "kurtosis": _finite(p.kurtosis) if clean else None,
        "quantiles": {str(q): _finite(v) for q, v in zip(QUANTILES, values, strict=True)},
    }


def live_statistics(p: OutputPartial) -> dict[str, Any]:
    """The contract's live figures of one output: count, mean, sem, ci95."""
    clean = _clean(p) and p.n > 0
    sem = _sem(p)
    mean = p.mean if clean else None
    ci = None if mean is None or sem is None else [mean - Z95 * sem, mean + Z95 * sem]
    return {"count": p.count, "mean": mean, "sem": _finite(sem), "ci95": ci}
