"""A run's report: one self-contained HTML file (or a PDF of it) to send to a colleague.

:func:`build_report` reads the run record, its summary and its results (an iterator, read
once, in sequence order) and returns one HTML document with everything inline: CSS, SVG
charts, no JavaScript and no external URL. It holds the run facts, the summary table, the
custom summary, a histogram and an empirical CDF per output (a two-bar chart for boolean
outputs), the failed sequences (the first 100) and the run spec.

Memory is bounded whatever the run's size: per output a histogram of 40 bins, counts of
non-finite values and a uniform reservoir sample of at most 200,000 values; for failures
the first 100 and a count per error type. When the summary gives an output's range
(``min``/``max`` over the ok sequences), every value is counted into bins fixed by it, so
the histogram is exact. Otherwise the histogram is built from the sample, which is exact
for outputs of at most 200,000 values. The ECDF is drawn from the sample; captions say
when a chart shows a sample.

:func:`write_pdf` prints the HTML to PDF with headless Chromium (``make chromium``).
"""

from __future__ import annotations

import datetime as dt
import html
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .errors import AnchoError
from .histogram import BINS, Histogram, bin_edges, is_integral, summary_range
from .results import SequenceResult
from .store import RunRecord

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ResultLike = SequenceResult | Mapping[str, Any]

SAMPLE_CAP = 200_000
MAX_FAILURES = 100
MAX_ERROR_TYPES = 50
ECDF_POINTS = 1_000
CHUNK = 8_192
MESSAGE_CHARS = 1_000
TRACEBACK_CHARS = 6_000
QUANTILES = ("0.01", "0.05", "0.25", "0.5", "0.75", "0.95", "0.99")
STATS = ("count", "mean", "stddev", "sem", "min", "max", "skewness", "kurtosis")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
NON_FINITE = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf, "infinity": math.inf}


@dataclass(slots=True)
class ReportData:
    """What a report shows: the run, its summary (None before it exists), its results."""

    run: RunRecord
    summary: dict[str, Any] | None
    results: Iterable[ResultLike]


# ---------------------------------------------------------------------------------------
# Streaming collection
# ---------------------------------------------------------------------------------------


class _Reservoir:
    """A uniform random sample of at most ``cap`` values (Algorithm R, vectorised)."""

    def __init__(self, cap: int, seed: int = 0) -> None:
        self.cap = cap
        self.seen = 0
        self._rng = np.random.default_rng(seed)
        self._parts: list[FloatArray] = []
        self._full: FloatArray | None = None

    def add(self, values: FloatArray) -> None:
        """Offer a chunk of values to the sample."""
        room = 0 if self._full is not None else self.cap - self.seen
        if room > 0:
            self._parts.append(values[:room].copy())
            if self.seen + min(room, values.size) == self.cap:
                self._full = np.concatenate(self._parts)
                self._parts = []
        rest = values[room:]
        if rest.size and self._full is not None:
            index = self.seen + room + np.arange(rest.size, dtype=np.int64)
            slots = self._rng.integers(0, index + 1)
            keep = slots < self.cap
            self._full[slots[keep]] = rest[keep]
        self.seen += values.size

    @property
    def sampled(self) -> bool:
        """Whether the sample holds fewer values than were offered."""
        return self.seen > self.cap

    def values(self) -> FloatArray:
        """The sample, in no particular order."""
        if self._full is not None:
            return self._full
        if not self._parts:
            return np.empty(0, dtype=np.float64)
        return np.concatenate(self._parts)


def _as_float(value: Any) -> float | None:
    """An output value as a float (bools 0/1, JSON's "nan"/"inf" strings); None if not one."""
    if isinstance(value, int | float):
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    if isinstance(value, str):
        return NON_FINITE.get(value.lower())
    return None


@dataclass(slots=True)
class _Distribution:
    """What the charts of one output show, once every result was read."""

    name: str
    finite: int
    nan: int
    posinf: int
    neginf: int
    invalid: int
    is_bool: bool
    true: int
    false: int
    histogram: Histogram | None
    histogram_exact: bool
    sample: FloatArray
    sampled: bool

    @property
    def non_finite(self) -> int:
        """How many values are NaN or infinite."""
        return self.nan + self.posinf + self.neginf


class _OutputCollector:
    """One output's values, read in chunks into bounded-size aggregates."""

    def __init__(self, name: str, summary_range: tuple[float, float] | None, cap: int) -> None:
        self.name = name
        self.all_bool = True
        self.all_int = True
        self.true = self.false = 0
        self.nan = self.posinf = self.neginf = self.invalid = 0
        self.lo, self.hi = math.inf, -math.inf
        self._pending: list[float] = []
        self._range = summary_range
        self._stream: Histogram | None = None
        self.reservoir = _Reservoir(cap)

    def push(self, value: Any) -> None:
        """Take one sequence's value of this output."""
        if isinstance(value, bool):
            self.true += value
            self.false += not value
        else:
            self.all_bool = False
            self.all_int = self.all_int and isinstance(value, int)
        number = _as_float(value)
        if number is None:
            self.invalid += 1
        elif math.isfinite(number):
            self._pending.append(number)
            if len(self._pending) >= CHUNK:
                self._flush()
        elif math.isnan(number):
            self.nan += 1
        elif number > 0:
            self.posinf += 1
        else:
            self.neginf += 1

    def _flush(self) -> None:
        if not self._pending:
            return
        chunk = np.asarray(self._pending, dtype=np.float64)
        self._pending = []
        self.lo, self.hi = min(self.lo, float(chunk.min())), max(self.hi, float(chunk.max()))
        self.reservoir.add(chunk)
        if self._range is not None:
            if self._stream is None:
                lo, hi = self._range
                integral = is_integral(self.all_int, lo, hi)
                self._stream = Histogram(bin_edges(lo, hi, BINS, integral), integral)
            self._stream.add(chunk)

    def _histogram(self) -> tuple[Histogram | None, bool]:
        """The exact streamed histogram, else one of the sample (exact if not sampled)."""
        stream = self._stream
        # Whole-number bins were chosen on the first chunk: a later non-integer voids them.
        if stream is not None and stream.outside == 0 and stream.integral <= self.all_int:
            return stream, True
        if self.reservoir.seen == 0:
            return None, True
        integral = is_integral(self.all_int, self.lo, self.hi)
        hist = Histogram(bin_edges(self.lo, self.hi, BINS, integral), integral)
        hist.add(self.reservoir.values())
        return hist, not self.reservoir.sampled

    def finish(self) -> _Distribution:
        """The chart data, after the last value."""
        self._flush()
        histogram, exact = self._histogram()
        return _Distribution(
            name=self.name,
            finite=self.reservoir.seen,
            nan=self.nan,
            posinf=self.posinf,
            neginf=self.neginf,
            invalid=self.invalid,
            is_bool=self.all_bool and self.true + self.false > 0,
            true=self.true,
            false=self.false,
            histogram=histogram,
            histogram_exact=exact,
            sample=np.sort(self.reservoir.values()),
            sampled=self.reservoir.sampled,
        )


@dataclass(slots=True)
class _Failure:
    sequence: int
    type: str
    message: str
    attempt: int


@dataclass(slots=True)
class _ErrorType:
    count: int
    first_sequence: int
    traceback: str


@dataclass(slots=True)
class _Failures:
    """The first failed sequences, and how many failed with each error type."""

    keep: int
    shown: list[_Failure] = field(default_factory=list)
    total: int = 0
    by_type: dict[str, _ErrorType] = field(default_factory=dict)

    def add(self, sequence: int, error: Mapping[str, Any] | None, attempt: int) -> None:
        """Record one failed sequence."""
        error = error or {}
        kind = str(error.get("type") or "unknown error")
        message = _clip(str(error.get("message") or ""), MESSAGE_CHARS)
        self.total += 1
        if len(self.shown) < self.keep:
            self.shown.append(_Failure(sequence, kind, message, attempt))
        if kind not in self.by_type and len(self.by_type) >= MAX_ERROR_TYPES:
            kind = "(other error types)"
        entry = self.by_type.get(kind)
        if entry is None:
            trace = _clip(str(error.get("traceback") or ""), TRACEBACK_CHARS)
            self.by_type[kind] = _ErrorType(1, sequence, trace)
        else:
            entry.count += 1


@dataclass(slots=True)
class _Collected:
    ok: int
    failed: int
    distributions: list[_Distribution]
    failures: _Failures


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _normalise(item: ResultLike) -> tuple[int, str, Mapping[str, Any], Any, int]:
    """``(sequence, status, outputs, error, attempt)`` of a result or its JSON dict."""
    if isinstance(item, SequenceResult):
        return item.sequence, item.status, item.outputs, item.error, item.attempt
    outputs = item.get("outputs") or {}
    attempt = int(item.get("attempt") or 1)
    return int(item["sequence"]), str(item["status"]), outputs, item.get("error"), attempt


def _summary_ranges(summary: Mapping[str, Any] | None) -> dict[str, tuple[float, float]]:
    """Each output's finite ``[min, max]`` from the summary, where it has one."""
    found = {n: summary_range(summary, n) for n in ((summary or {}).get("outputs") or {})}
    return {name: bounds for name, bounds in found.items() if bounds is not None}


def _collect(
    results: Iterable[ResultLike],
    names: list[str],
    summary: Mapping[str, Any] | None,
    sample_cap: int,
    max_failures: int,
) -> _Collected:
    """Read every result once into bounded aggregates."""
    ranges = _summary_ranges(summary)
    collectors = {n: _OutputCollector(n, ranges.get(n), sample_cap) for n in names}
    failures = _Failures(max_failures)
    ok = failed = 0
    for item in results:
        sequence, status, outputs, error, attempt = _normalise(item)
        if status != "ok":
            failed += 1
            failures.add(sequence, error, attempt)
            continue
        ok += 1
        for name, value in outputs.items():
            collector = collectors.get(name)
            if collector is None:
                collector = collectors[name] = _OutputCollector(name, ranges.get(name), sample_cap)
            collector.push(value)
    return _Collected(ok, failed, [c.finish() for c in collectors.values()], failures)


# ---------------------------------------------------------------------------------------
# Formatting
# ---------------------------------------------------------------------------------------


def _e(value: object) -> str:
    """Text escaped for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def _num(value: Any) -> str:
    """A statistic as printed: integers with separators, floats to 6 significant digits."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _time(ts: float | None) -> str:
    if not ts:
        return "—"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _duration(start: float | None, end: float | None) -> str:
    if not start or not end:
        return "—"
    seconds = max(0.0, end - start)
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _version() -> str:
    try:
        return metadata.version("ancho")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------
# SVG charts
# ---------------------------------------------------------------------------------------

WIDTH, HEIGHT = 480, 250
LEFT, RIGHT, TOP, BOTTOM = 70, 14, 12, 44


@dataclass(frozen=True, slots=True)
class _Frame:
    """The plot area of a chart and the data ranges it maps onto it."""

    x0: float
    x1: float
    y0: float
    y1: float

    def x(self, value: float) -> float:
        """Pixel column of a data value."""
        span = self.x1 - self.x0
        t = 0.5 if not span or not math.isfinite(span) else (value - self.x0) / span
        return LEFT + t * (WIDTH - LEFT - RIGHT)

    def y(self, value: float) -> float:
        """Pixel row of a data value."""
        span = self.y1 - self.y0
        t = 0.0 if not span else (value - self.y0) / span
        return HEIGHT - BOTTOM - t * (HEIGHT - TOP - BOTTOM)


def _nice_ticks(lo: float, hi: float, target: int = 6, integral: bool = False) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) within [lo, hi]."""
    span = hi - lo
    if not span > 0 or not math.isfinite(span):
        return [lo] if lo == hi else [lo, hi]
    raw = span / target
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integral:
        step = max(1.0, round(step))
    first = math.ceil(lo / step) * step
    count = math.floor((hi - first) / step + 1e-9) + 1
    return [first + k * step for k in range(max(count, 0))]


def _tick_label(value: float, ticks: list[float]) -> str:
    """A tick label with just enough decimals to tell the ticks apart."""
    if len(ticks) > 1:
        step = abs(ticks[1] - ticks[0])
        biggest = max(abs(t) for t in ticks)
        if abs(value) < step * 1e-9:
            return "0"
        if step >= 1e-4 and biggest < 1e6:
            decimals = max(0, -math.floor(math.log10(step) + 1e-9))
            decimals += 1 if round(step * 10**decimals, 6) % 1 else 0
            return f"{value:,.{decimals}f}"
        if step >= 1e5 and biggest < 1e12:
            return f"{value / 1e6:,.6g}M"
    return f"{value:.4g}"


def _axes(frame: _Frame, xticks: list[float], yticks: list[float], labels: tuple[str, str]) -> str:
    """Axis lines, ticks, tick labels and axis titles."""
    base, left = HEIGHT - BOTTOM, LEFT
    parts = [
        f'<line class="axis" x1="{left}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>',
        f'<line class="axis" x1="{left}" y1="{TOP}" x2="{left}" y2="{base}"/>',
    ]
    for t in xticks:
        x = frame.x(t)
        parts.append(f'<line class="tick" x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 5}"/>')
        label = _e(_tick_label(t, xticks))
        parts.append(f'<text class="xtick" x="{x:.1f}" y="{base + 17}">{label}</text>')
    for t in yticks:
        y = frame.y(t)
        parts.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
        )
        label = _e(_tick_label(t, yticks))
        parts.append(f'<text class="ytick" x="{left - 6}" y="{y + 4:.1f}">{label}</text>')
    xlabel, ylabel = (_e(s) for s in labels)
    mid = (TOP + base) / 2
    parts.append(
        f'<text class="xlabel" x="{(left + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}">{xlabel}</text>'
    )
    parts.append(
        f'<text class="ylabel" x="12" y="{mid}" transform="rotate(-90 12 {mid})">{ylabel}</text>'
    )
    return "".join(parts)


def _svg(kind: str, name: str, attrs: str, body: str, label: str) -> str:
    size = f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
    return (
        f'<svg class="chart {kind}" data-output="{_e(name)}" {attrs} {size} role="img" '
        f'aria-label="{_e(label)}">{body}</svg>'
    )


def _histogram_svg(dist: _Distribution, hist: Histogram) -> str:
    """Bars of a histogram; each bar carries its count and edges in data- attributes."""
    edges, counts = hist.edges.tolist(), hist.counts.tolist()
    top = max(1, *counts)
    yticks = _nice_ticks(0, top, 5, integral=True)
    frame = _Frame(edges[0], edges[-1], 0.0, max(top, yticks[-1]))
    bars = []
    for lo, hi, count in zip(edges[:-1], edges[1:], counts, strict=True):
        x0, x1, y = frame.x(lo), frame.x(hi), frame.y(count)
        gap = 0.5 if x1 - x0 > 3 else 0.0
        tip = f"[{lo:.6g}, {hi:.6g}): {count:,}"
        bars.append(
            f'<rect class="bar" data-count="{count}" data-lo="{lo!r}" data-hi="{hi!r}" '
            f'x="{x0 + gap:.2f}" y="{y:.2f}" width="{max(x1 - x0 - 2 * gap, 0.5):.2f}" '
            f'height="{HEIGHT - BOTTOM - y:.2f}"><title>{_e(tip)}</title></rect>'
        )
    xticks = _nice_ticks(edges[0], edges[-1], 7, integral=hist.integral)
    body = _axes(frame, xticks, yticks, (dist.name, "sequences")) + "".join(bars)
    attrs = f'data-total="{sum(counts)}" data-exact="{str(dist.histogram_exact).lower()}"'
    return _svg("histogram", dist.name, attrs, body, f"histogram of {dist.name}")


def _bool_svg(dist: _Distribution) -> str:
    """Two bars: how many sequences gave false and true."""
    top = max(1, dist.true, dist.false)
    yticks = _nice_ticks(0, top, 5, integral=True)
    frame = _Frame(-0.5, 1.5, 0.0, max(top, yticks[-1]))
    parts = [_axes(frame, [], yticks, (dist.name, "sequences"))]
    for position, (label, count) in enumerate((("false", dist.false), ("true", dist.true))):
        x0, x1, y = frame.x(position - 0.3), frame.x(position + 0.3), frame.y(count)
        parts.append(
            f'<rect class="bar" data-count="{count}" data-value="{label}" x="{x0:.2f}" '
            f'y="{y:.2f}" width="{x1 - x0:.2f}" height="{HEIGHT - BOTTOM - y:.2f}">'
            f"<title>{label}: {count:,}</title></rect>"
            f'<text class="xtick" x="{frame.x(position):.1f}" y="{HEIGHT - BOTTOM + 17}">'
            f"{label} ({count:,})</text>"
        )
    attrs = f'data-total="{dist.true + dist.false}" data-exact="true"'
    return _svg("histogram bool", dist.name, attrs, "".join(parts), f"{dist.name}: false/true")


def _ecdf_points(sample: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Distinct values and the ECDF at each (at most ``ECDF_POINTS`` of them)."""
    values, counts = np.unique(sample, return_counts=True)
    cdf = np.cumsum(counts) / sample.size
    if values.size > ECDF_POINTS:
        grid = np.linspace(0.0, 1.0, ECDF_POINTS + 1)[1:]
        pick = np.unique(np.minimum(np.searchsorted(cdf, grid - 1e-12), values.size - 1))
        values, cdf = values[pick], cdf[pick]
    return values, cdf


def _ecdf_svg(dist: _Distribution, x0: float, x1: float) -> str:
    """The empirical CDF as a step line from 0 (left edge) to 1 (right edge)."""
    frame = _Frame(x0, x1, 0.0, 1.0)
    values, cdf = _ecdf_points(dist.sample)
    points = [(frame.x(x0), frame.y(0.0))]
    previous = 0.0
    for value, f in zip(values, cdf, strict=True):
        x = frame.x(float(value))
        points += [(x, frame.y(previous)), (x, frame.y(float(f)))]
        previous = float(f)
    points.append((frame.x(x1), frame.y(previous)))
    line = " ".join(f"{x:.2f},{y:.2f}" for x, y in points)
    integral = dist.histogram is not None and dist.histogram.integral
    xticks = _nice_ticks(x0, x1, 7, integral=integral)
    yticks = [0.0, 0.25, 0.5, 0.75, 1.0]
    body = _axes(frame, xticks, yticks, (dist.name, "fraction of sequences ≤ x"))
    body += f'<polyline class="ecdf-line" points="{line}"/>'
    attrs = (
        f'data-n="{dist.sample.size}" data-final="{previous!r}" '
        f'data-y0="{frame.y(0.0):.2f}" data-y1="{frame.y(1.0):.2f}"'
    )
    return _svg("ecdf", dist.name, attrs, body, f"empirical CDF of {dist.name}")


# ---------------------------------------------------------------------------------------
# HTML sections
# ---------------------------------------------------------------------------------------


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{_e(title)}</h2>{body}</section>'


def _facts(run: RunRecord) -> str:
    """The run's identity, state, counts and timestamps as a definition list."""
    model = run.spec.get("model") or {}
    rows = [
        ("Run", f"<code>{_e(run.id)}</code>"),
        ("Name", _e(run.name)),
        ("State", f'<span class="state state-{_e(run.state)}">{_e(run.state)}</span>'),
        ("Seed", f"<code>{_e(run.seed)}</code>"),
        ("Sequences", f"{run.sequences:,}"),
        ("Ok", f"{run.ok:,}"),
        ("Failed", f"{run.failed:,}"),
        ("Model", f"<code>{_e(model.get('source', '—'))} {_e(model.get('entrypoint', ''))}</code>"),
        ("Created", _time(run.created_at)),
        ("Started", _time(run.started_at)),
        ("Finished", _time(run.finished_at)),
        ("Duration", _duration(run.started_at or run.created_at, run.finished_at)),
    ]
    if run.reason:
        rows.append(("Reason", _e(run.reason)))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f'<dl class="facts">{items}</dl>'


def _header(run: RunRecord, generated_at: float) -> str:
    counts = f"{run.sequences:,} sequences: {run.ok:,} ok, {run.failed:,} failed"
    return (
        f'<header><p class="kicker">Ancho run report</p><h1>{_e(run.name)}</h1>'
        f'<p class="subtitle">run <code>{_e(run.id)}</code> · '
        f'<span class="state state-{_e(run.state)}">{_e(run.state)}</span> · seed '
        f"<code>{_e(run.seed)}</code> · {counts}</p>"
        f'<p class="generated">Generated {_time(generated_at)} by Ancho {_e(_version())}.</p>'
        f"{_facts(run)}</header>"
    )


def _summary_tables(names: list[str], stats: Mapping[str, Any]) -> str:
    """The statistics table and the quantiles table, one row per output."""
    if not stats:
        return '<p class="note">No summary is stored for this run yet.</p>'
    head = "".join(f"<th>{_e(s)}</th>" for s in STATS)
    rows = []
    qhead = "".join(f"<th>q{_e(q)}</th>" for q in QUANTILES)
    qrows = []
    for name in (n for n in names if n in stats):
        s = stats[name] or {}
        cells = "".join(
            f'<td data-stat="{k}" title="{_e(repr(s.get(k)))}">{_e(_num(s.get(k)))}</td>'
            for k in STATS
        )
        rows.append(f'<tr data-output="{_e(name)}"><th scope="row">{_e(name)}</th>{cells}</tr>')
        q = s.get("quantiles") or {}
        qcells = "".join(
            f'<td data-quantile="{k}" title="{_e(repr(q.get(k)))}">{_e(_num(q.get(k)))}</td>'
            for k in QUANTILES
        )
        qrows.append(f'<tr data-output="{_e(name)}"><th scope="row">{_e(name)}</th>{qcells}</tr>')
    note = (
        '<p class="note">Over the ok sequences; <code>stddev</code> is the sample standard '
        "deviation, <code>sem</code> its standard error of the mean, <code>skewness</code> and "
        "<code>kurtosis</code> (excess) are population moments; — means no finite value. "
        "Numbers are rounded to 6 significant digits (hover for the stored value).</p>"
    )
    return (
        f'<table id="summary-table" class="stats"><thead><tr><th>output</th>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
        f'<h3>Quantiles</h3><table id="quantiles-table" class="stats"><thead><tr>'
        f"<th>output</th>{qhead}</tr></thead><tbody>{''.join(qrows)}</tbody></table>{note}"
    )


def _caption(dist: _Distribution) -> str:
    """What the charts of one output show, and which parts are a sample."""
    if dist.is_bool:
        return f"{dist.true + dist.false:,} ok sequences: {dist.false:,} false, {dist.true:,} true."
    parts = [f"{dist.finite:,} finite values from the ok sequences."]
    if dist.histogram is not None:
        hist = dist.histogram
        width = float(hist.edges[1] - hist.edges[0])
        parts.append(f"Histogram: {hist.counts.size} bins of width {width:.4g}.")
    if dist.sampled:
        sample = (
            f"a uniform random sample (reservoir sampling) of {dist.sample.size:,} of the "
            f"{dist.finite:,} values"
        )
        parts.append(
            f"Every value is counted in the histogram; the ECDF is drawn from {sample}."
            if dist.histogram_exact
            else f"The histogram and the ECDF are drawn from {sample}."
        )
    if dist.non_finite:
        kinds = (("nan", dist.nan), ("+inf", dist.posinf), ("-inf", dist.neginf))
        which = ", ".join(f"{label} {count:,}" for label, count in kinds if count)
        parts.append(f"Not charted: {dist.non_finite:,} non-finite values ({which}).")
    if dist.invalid:
        parts.append(f"Not charted: {dist.invalid:,} values that are not numbers.")
    return " ".join(parts)


def _charts(dist: _Distribution) -> str:
    """The figure of one output: histogram and ECDF, or a two-bar chart for booleans."""
    if dist.is_bool:
        charts = _bool_svg(dist)
    elif dist.histogram is None:
        charts = '<p class="note">No finite values to chart.</p>'
    else:
        edges = dist.histogram.edges
        charts = _histogram_svg(dist, dist.histogram) + _ecdf_svg(
            dist, float(edges[0]), float(edges[-1])
        )
    return (
        f'<figure class="output" id="output-{_e(dist.name)}"><h3>{_e(dist.name)}</h3>'
        f'<div class="charts">{charts}</div><figcaption>{_e(_caption(dist))}</figcaption></figure>'
    )


def _failures_section(failures: _Failures) -> str:
    """Counts by error type (with one traceback each) and the first failed sequences."""
    if not failures.total:
        return '<p class="note">No sequence failed.</p>'
    types = "".join(
        f'<tr data-error-type="{_e(kind)}"><th scope="row"><code>{_e(kind)}</code></th>'
        f"<td>{t.count:,}</td><td>{t.first_sequence}</td><td>"
        + (
            f"<details><summary>traceback</summary><pre>{_e(t.traceback)}</pre></details>"
            if t.traceback
            else "—"
        )
        + "</td></tr>"
        for kind, t in sorted(failures.by_type.items(), key=lambda kv: -kv[1].count)
    )
    rows = "".join(
        f'<tr class="failure" data-sequence="{f.sequence}"><td>{f.sequence}</td>'
        f'<td class="error-type"><code>{_e(f.type)}</code></td>'
        f'<td class="error-message">{_e(f.message)}</td><td>{f.attempt}</td></tr>'
        for f in failures.shown
    )
    more = failures.total - len(failures.shown)
    tail = f'<p class="more">… and {more:,} more failed sequences.</p>' if more > 0 else ""
    return (
        f"<p>{failures.total:,} sequences failed.</p>"
        '<table id="error-types" class="list"><thead><tr><th>error type</th><th>sequences</th>'
        f"<th>first</th><th>traceback (first)</th></tr></thead><tbody>{types}</tbody></table>"
        f"<h3>First {len(failures.shown):,} failed sequences</h3>"
        '<table id="failures" class="list"><thead><tr><th>sequence</th><th>error type</th>'
        f"<th>message</th><th>attempt</th></tr></thead><tbody>{rows}</tbody></table>{tail}"
    )


def _output_names(run: RunRecord, summary: Mapping[str, Any] | None) -> list[str]:
    names = list(run.outputs or [])
    names += [n for n in ((summary or {}).get("outputs") or {}) if n not in names]
    return names


def build_report(
    run: RunRecord,
    summary: dict[str, Any] | None,
    results: Iterable[ResultLike],
    *,
    sample_cap: int = SAMPLE_CAP,
    max_failures: int = MAX_FAILURES,
    generated_at: float | None = None,
) -> str:
    """The run's report as one self-contained HTML document.

    ``results`` (``SequenceResult`` objects, or their JSON-lines dicts) is read once, in
    any order; memory stays bounded by ``sample_cap`` values per output.
    """
    names = _output_names(run, summary)
    data = _collect(results, names, summary, sample_cap, max_failures)
    stats = (summary or {}).get("outputs") or {}
    custom = (summary or {}).get("custom") or {}
    charted = f"<p>Charts of the {data.ok:,} stored ok sequences.</p>" + "".join(
        _charts(d) for d in data.distributions
    )
    sections = [
        _section("summary", "Summary", _summary_tables(names, stats)),
        _section(
            "custom",
            "Custom summary",
            f'<pre class="json">{_e(_json(custom))}</pre>'
            if custom
            else '<p class="note">The model has no custom summary.</p>',
        ),
        _section("distributions", "Distributions", charted),
        _section("failures", "Failures", _failures_section(data.failures)),
        _section(
            "spec", "Run spec", f'<pre class="json" id="spec-json">{_e(_json(run.spec))}</pre>'
        ),
    ]
    when = generated_at if generated_at is not None else dt.datetime.now(dt.UTC).timestamp()
    title = f"{run.name} ({run.id}): Ancho run report"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="Ancho {_e(_version())}">'
        f"<title>{_e(title)}</title><style>{CSS}</style></head><body><main>"
        f"{_header(run, when)}{''.join(sections)}</main></body></html>\n"
    )


# ---------------------------------------------------------------------------------------
# Files: HTML and PDF
# ---------------------------------------------------------------------------------------


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early, with a sentence, when ``path`` cannot become a file."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if target.is_dir():
        raise AnchoError(f"-o {target}: is a folder; name a file, such as {target / 'report.html'}")
    if not parent.exists():
        raise AnchoError(f"-o {target}: the folder {parent} does not exist")
    if not parent.is_dir():
        raise AnchoError(f"-o {target}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK) or (
        target.exists() and not os.access(target, os.W_OK)
    ):
        raise AnchoError(f"-o {target}: not writable")
    return target


def write_html(text: str, path: str | os.PathLike[str]) -> None:
    """Write the report atomically (a temporary file beside it, then a rename)."""
    target = Path(path)
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent or ".")
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(temp, 0o666 & ~umask)
        os.replace(temp, target)
    except OSError as exc:
        raise AnchoError(f"cannot write the report to {target}: {exc.strerror or exc}") from exc


def find_chromium() -> str:
    """The path of a Chromium or Chrome binary, else an :class:`AnchoError` saying how to fix it."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise AnchoError(
        "--pdf prints the report with headless Chromium, but none of "
        f"{', '.join(CHROMIUM_NAMES)} is on PATH; install it with `make chromium` "
        "(scripts/install-chromium.sh: Debian's chromium), or leave out --pdf for HTML"
    )


def write_pdf(
    html_path: str | os.PathLike[str],
    pdf_path: str | os.PathLike[str],
    *,
    chromium: str | None = None,
    timeout_s: float = 120.0,
) -> None:
    """Print an HTML file to PDF with headless Chromium; ``pdf_path`` appears only when done."""
    binary = chromium or find_chromium()
    source, target = Path(html_path).resolve(), Path(pdf_path)
    with tempfile.TemporaryDirectory(prefix="ancho-pdf-") as work:
        printed = Path(work) / "report.pdf"
        command = [
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-pdf-header-footer",
            f"--user-data-dir={Path(work) / 'profile'}",
            f"--print-to-pdf={printed}",
            source.as_uri(),
        ]
        try:
            proc = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise AnchoError(f"{binary} did not print {source} to PDF in {timeout_s:g} s") from exc
        except OSError as exc:
            raise AnchoError(f"cannot start {binary}: {exc.strerror or exc}") from exc
        if proc.returncode != 0 or not printed.is_file() or printed.stat().st_size == 0:
            last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise AnchoError(
                f"{binary} could not print {source} to PDF (exit {proc.returncode}): {last}"
            )
        try:
            shutil.move(printed, target)
        except OSError as exc:
            raise AnchoError(f"cannot write the PDF to {target}: {exc.strerror or exc}") from exc


def save_report(
    text: str, path: str | os.PathLike[str], *, pdf: bool, chromium: str | None
) -> None:
    """Write the report to ``path``: the HTML itself, or (``pdf``) Chromium's print of it."""
    if not pdf:
        write_html(text, path)
        return
    with tempfile.TemporaryDirectory(prefix="ancho-report-") as work:
        page = Path(work) / "report.html"
        write_html(text, page)
        write_pdf(page, path, chromium=chromium)


CSS = """
:root { --ink: #1d232b; --muted: #5b6673; --rule: #d8dde3; --accent: #2f6db5;
  --bar: #4a7fc1; --paper: #ffffff; --band: #f5f7f9; }
* { box-sizing: border-box; }
html { font-size: 15px; }
body { margin: 0; color: var(--ink); background: var(--paper);
  font-family: "Source Sans 3", "Segoe UI", "Helvetica Neue", "DejaVu Sans", Arial, sans-serif;
  line-height: 1.5; -webkit-print-color-adjust: exact; print-color-adjust: exact; }
main { max-width: 62rem; margin: 0 auto; padding: 2rem 1.5rem 4rem; }
h1 { font-size: 2rem; line-height: 1.2; margin: 0.1rem 0 0.4rem; }
h2 { font-size: 1.35rem; margin: 2.4rem 0 0.8rem; padding-bottom: 0.3rem;
  border-bottom: 2px solid var(--rule); }
h3 { font-size: 1.05rem; margin: 1.6rem 0 0.5rem; }
code, pre { font-family: "DejaVu Sans Mono", Menlo, Consolas, monospace; font-size: 0.85em; }
pre { background: var(--band); border: 1px solid var(--rule); border-radius: 4px;
  padding: 0.8rem 1rem; overflow-x: auto; white-space: pre-wrap; word-break: break-word; }
.kicker { text-transform: uppercase; letter-spacing: 0.08em; color: var(--muted);
  font-size: 0.8rem; margin: 0; }
.subtitle { margin: 0 0 0.2rem; font-size: 1.05rem; }
.generated, .note, figcaption, .more { color: var(--muted); font-size: 0.88rem; }
.state { display: inline-block; padding: 0 0.5em; border-radius: 3px; font-weight: 600;
  font-size: 0.9em; background: #e8ecf0; }
.state-FINISHED { background: #dcf1e2; color: #17602d; }
.state-FAILED, .state-KILLED { background: #fbe3e1; color: #8e1f17; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1.2rem;
  margin: 1.2rem 0 0; padding: 0.9rem 1rem; background: var(--band); border-radius: 4px; }
.facts dt { color: var(--muted); }
.facts dd { margin: 0; word-break: break-word; }
table { border-collapse: collapse; width: 100%; margin: 0.4rem 0 0.8rem;
  font-size: 0.86rem; font-variant-numeric: tabular-nums; }
th, td { padding: 0.3rem 0.5rem; border-bottom: 1px solid var(--rule); vertical-align: top; }
thead th { text-align: right; border-bottom: 2px solid var(--ink); white-space: nowrap; }
table.stats td { text-align: right; white-space: nowrap; }
table.stats th[scope=row], thead th:first-child, table.list th, table.list td { text-align: left; }
tbody tr:nth-child(even) { background: var(--band); }
.error-message { word-break: break-word; }
figure.output { margin: 1.2rem 0 2rem; }
figure.output h3 { margin-top: 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr));
  gap: 0.5rem 1.5rem; }
svg.chart { width: 100%; height: auto; }
svg .axis { stroke: var(--ink); stroke-width: 1; }
svg .tick { stroke: var(--ink); }
svg .grid { stroke: var(--rule); stroke-width: 0.6; }
svg text { font-size: 12px; fill: var(--ink); font-family: inherit; }
svg .xtick, svg .xlabel, svg .ylabel { text-anchor: middle; }
svg .ytick { text-anchor: end; }
svg .xlabel, svg .ylabel { font-size: 13px; fill: var(--muted); }
svg .bar { fill: var(--bar); }
svg .ecdf-line { fill: none; stroke: var(--accent); stroke-width: 1.6; }
details summary { cursor: pointer; color: var(--accent); }
details pre { font-size: 0.78rem; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  html { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  section { break-before: page; }
  section#custom { break-before: auto; }
  h2, h3 { break-after: avoid; }
  figure.output, tr, .facts { break-inside: avoid; }
  .charts { grid-template-columns: 1fr 1fr; }
  pre { white-space: pre-wrap; }
}
"""
