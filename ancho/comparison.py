"""``ancho compare RUN_A RUN_B``: the difference of one output's means, with its 95%
interval (DESIGN.md, "Experiments").

When both runs have the same seed and the same number of sequences, sequence ``i`` of
each drew the same random numbers (common random numbers), so the difference is
estimated from the pairs ``a_i - b_i`` over the sequences ok in both: its variance is
that of the pair differences, far smaller than the sum of the two variances when the
outputs move together. Otherwise the runs are compared unpaired, with Welch's standard
error ``sqrt(s_a²/n_a + s_b²/n_b)``. Both intervals are ``difference ± 1.959964 se``
(the normal quantile every other interval of Ancho uses). ``variance_reduction`` is the
unpaired variance of the difference over the paired one (1.0 when unpaired).

Results are streamed in sequence order and folded with Welford's updates: memory does
not grow with the number of sequences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import AnchoError
from .partials import Z95

__all__ = ["Comparison", "Row", "compare_runs"]

#: One result as the backends stream it: (sequence, status, outputs).
Row = tuple[int, str, Mapping[str, Any]]


@dataclass(slots=True)
class _Moments:
    """Count, mean and sum of squared deviations (Welford)."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, x: float) -> None:
        self.n += 1
        delta = x - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (x - self.mean)

    @property
    def var(self) -> float:
        """The sample variance (0 for fewer than two values)."""
        return self.m2 / (self.n - 1) if self.n > 1 else 0.0


@dataclass(frozen=True, slots=True)
class Comparison:
    """The contract's comparison of one output between two runs."""

    output: str
    difference: float
    ci95: tuple[float, float]
    paired: bool
    variance_reduction: float
    pairs: int

    def to_dict(self) -> dict[str, Any]:
        """``{"output", "difference", "ci95", "paired", "variance_reduction"}`` and the
        number of sequences the estimate used (``n``)."""
        return {
            "output": self.output,
            "difference": self.difference,
            "ci95": list(self.ci95),
            "paired": self.paired,
            "variance_reduction": self.variance_reduction,
            "n": self.pairs,
        }

    def text(self, a: str, b: str) -> str:
        """For people: one line."""
        how = (f"paired over {self.pairs:,} sequences, variance reduction"
               f" {self.variance_reduction:.3g}x" if self.paired
               else f"unpaired (Welch), {self.pairs:,} sequences")  # fmt: skip
        lo, hi = self.ci95
        return (f"{self.output}: {a} - {b} = {self.difference:.6g}, 95% interval"
                f" [{lo:.6g}, {hi:.6g}] ({how})")  # fmt: skip


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _values(rows: Iterable[Row], output: str) -> Iterator[tuple[int, float]]:
    for sequence, status, outputs in rows:
        if status == "ok" and (x := _number(outputs.get(output))) is not None:
            yield sequence, x


def compare_runs(
    a: Mapping[str, Any], b: Mapping[str, Any], rows_a: Iterable[Row], rows_b: Iterable[Row],
    output: str | None = None,
) -> Comparison:  # fmt: skip
    """Compare run documents ``a`` and ``b`` (as ``ancho status`` shows them) on
    ``output`` (default: the first output both have), from their results in sequence
    order. AnchoError when the output is missing or a run has too few values."""
    name = output or _shared_output(a, b)
    for doc in (a, b):
        has = list(doc.get("outputs") or [])
        if name not in has:
            raise AnchoError(f"--output {name}: run {doc['id']} has no output {name!r}"
                             f" (it has: {', '.join(has) or 'none'})")  # fmt: skip
    paired = a.get("seed") == b.get("seed") and _total(a) == _total(b)
    if paired:
        return _paired(name, _values(rows_a, name), _values(rows_b, name), a, b)
    return _welch(name, _values(rows_a, name), _values(rows_b, name), a, b)


def _total(doc: Mapping[str, Any]) -> int:
    return int((doc.get("counts") or {}).get("total", -1))


def _shared_output(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    theirs = set(b.get("outputs") or [])
    shared = [o for o in (a.get("outputs") or []) if o in theirs]
    if not shared:
        raise AnchoError(f"runs {a['id']} and {b['id']} have no output in common")
    return str(shared[0])


def _paired(name: str, xs: Iterator[tuple[int, float]], ys: Iterator[tuple[int, float]],
            a: Mapping[str, Any], b: Mapping[str, Any]) -> Comparison:  # fmt: skip
    d, ma, mb = _Moments(), _Moments(), _Moments()
    x, y = next(xs, None), next(ys, None)
    while x is not None and y is not None:  # a merge join on the sequence index
        if x[0] < y[0]:
            x = next(xs, None)
        elif y[0] < x[0]:
            y = next(ys, None)
        else:
            d.add(x[1] - y[1])
            ma.add(x[1])
            mb.add(y[1])
            x, y = next(xs, None), next(ys, None)
    _enough(d.n, a, b)
    se = math.sqrt(d.var / d.n)
    unpaired = ma.var + mb.var
    reduction = unpaired / d.var if d.var > 0 else math.inf
    return Comparison(name, d.mean, (d.mean - Z95 * se, d.mean + Z95 * se), True, reduction, d.n)


def _welch(name: str, xs: Iterator[tuple[int, float]], ys: Iterator[tuple[int, float]],
           a: Mapping[str, Any], b: Mapping[str, Any]) -> Comparison:  # fmt: skip
    ma, mb = _Moments(), _Moments()
    for _, x in xs:
        ma.add(x)
    for _, y in ys:
        mb.add(y)
    _enough(min(ma.n, mb.n), a, b)
    diff = ma.mean - mb.mean
    se = math.sqrt(ma.var / ma.n + mb.var / mb.n)
    return Comparison(name, diff, (diff - Z95 * se, diff + Z95 * se), False, 1.0,
                      min(ma.n, mb.n))  # fmt: skip


def _enough(n: int, a: Mapping[str, Any], b: Mapping[str, Any]) -> None:
    if n < 2:
        raise AnchoError(f"runs {a['id']} and {b['id']}: fewer than 2 ok sequences to"
                         " compare")  # fmt: skip
