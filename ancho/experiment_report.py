"""An experiment's report: one self-contained HTML file (or a PDF of it), as a run's is.

:func:`build_experiment_report` takes an experiment document (``ancho experiment status
--format json``, ``GET /api/v1/experiments/{id}``) and draws, for each output and each
swept parameter with numeric values, the output's mean at every point against the
parameter, with its 95% band (mean ± 1.96 sem, the interval ``ancho experiment results``
gives). Points that differ only in that parameter are one series: a line through the
means over a shaded band, one colour per combination of the other swept parameters
(``sigma=0.1``, ``sigma=0.2``). When no two points share the other parameters (a Latin
hypercube), or there would be more than :data:`MAX_SERIES` lines, each point is a
marker with its error bar and nothing joins them. A point whose run has no summary yet
is left out of the charts and counted in their caption; parameters whose values are not
numbers (or are booleans) are listed, not charted.

The document alone is enough: it holds every point's parameters, run and summary, so
the report reads no results and costs the same for a run of ten sequences or ten
million. Each marker carries its values in ``data-`` attributes (``data-x``,
``data-mean``, ``data-lo``, ``data-hi``, ``data-run``) for scripts and tests.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from typing import Any

from .experiments import point_rows
from .report import (  # the run report's chart primitives and style
    CSS,
    _axes,
    _e,
    _Frame,
    _json,
    _nice_ticks,
    _num,
    _section,
    _svg,
    _time,
    _version,
)

__all__ = ["MAX_SERIES", "build_experiment_report", "swept_parameters"]

#: More lines than this in one chart and the points are drawn as markers only.
MAX_SERIES = 8
#: One colour per series, in order (the run report's accent first).
PALETTE = ("#2f6db5", "#c2571a", "#2e8b57", "#8e44ad", "#b8860b", "#c0392b", "#16a085",
           "#5d6d7e")  # fmt: skip
EXTRA_CSS = """
svg .band { stroke: none; fill-opacity: 0.16; }
svg .mean-line { fill: none; stroke-width: 1.6; }
svg .errorbar { stroke-width: 1.2; }
.legend { list-style: none; padding: 0; margin: 0.2rem 0 0; font-size: 0.86rem;
  display: flex; flex-wrap: wrap; gap: 0.2rem 1.2rem; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;
  margin-right: 0.35em; vertical-align: -0.1em; }
"""


@dataclass(frozen=True, slots=True)
class _Point:
    """One point's value of an output: the mean and its 95% interval."""

    index: int
    run: str
    parameters: dict[str, Any]
    mean: float
    lo: float
    hi: float


def _number(value: Any) -> float | None:
    """A parameter value on a numeric axis: ints and finite floats, not booleans."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def swept_parameters(points: list[dict[str, Any]]) -> list[str]:
    """The parameters whose values differ between points, in the order they appear."""
    names = list(dict.fromkeys(name for p in points for name in p["parameters"]))
    return [name for name in names if len({_key(p["parameters"].get(name)) for p in points}) > 1]


def _values(rows: list[dict[str, Any]], output: str) -> tuple[list[_Point], int]:
    """The points with a finite mean and interval of ``output``, and how many have none."""
    found: list[_Point] = []
    for row in rows:
        stats = row["outputs"].get(output) or {}
        mean, ci = stats.get("mean"), stats.get("ci95")
        if isinstance(mean, int | float) and ci and all(math.isfinite(v) for v in (mean, *ci)):
            found.append(_Point(row["point"], row["run"], row["parameters"], float(mean),
                                float(ci[0]), float(ci[1])))  # fmt: skip
    return found, len(rows) - len(found)


def _series(points: list[_Point], param: str,
            others: list[str]) -> tuple[list[tuple[str, list[_Point]]], bool]:  # fmt: skip
    """The points grouped by the other swept parameters, each group sorted along
    ``param``, and whether to join them (some group has two points, and few groups)."""
    groups: dict[str, list[_Point]] = {}
    labels: dict[str, str] = {}
    for point in points:
        key = _key([point.parameters.get(o) for o in others])
        groups.setdefault(key, []).append(point)
        labels[key] = ", ".join(f"{o}={_short(point.parameters.get(o))}" for o in others)
    joined = len(groups) <= MAX_SERIES and any(len(g) > 1 for g in groups.values())
    if not joined:
        return [("", sorted(points, key=lambda p: _number(p.parameters[param]) or 0.0))], False
    return [(labels[k], sorted(g, key=lambda p: _number(p.parameters[param]) or 0.0))
            for k, g in groups.items()], True  # fmt: skip


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)


def _chart(output: str, param: str, points: list[_Point], others: list[str]) -> str:
    """Means of ``output`` against ``param``: bands and lines per series, or markers."""
    series, joined = _series(points, param, others)
    xs = [_number(p.parameters[param]) or 0.0 for p in points]
    x0, x1 = min(xs), max(xs)
    pad = (x1 - x0) * 0.04 or 1.0
    yticks = _nice_ticks(min(p.lo for p in points), max(p.hi for p in points), 5)
    y0 = min(yticks[0], *(p.lo for p in points))
    y1 = max(yticks[-1], *(p.hi for p in points))
    frame = _Frame(x0 - pad, x1 + pad, y0, y1)
    parts = [_axes(frame, _nice_ticks(x0, x1, 6), yticks, (param, f"mean of {output}"))]
    for number, (_, group) in enumerate(series):
        colour = PALETTE[number % len(PALETTE)] if joined else PALETTE[0]
        at = [(frame.x(_number(p.parameters[param]) or 0.0), p) for p in group]
        if joined and len(group) > 1:
            band = [f"{x:.2f},{frame.y(p.hi):.2f}" for x, p in at]
            band += [f"{x:.2f},{frame.y(p.lo):.2f}" for x, p in reversed(at)]
            line = " ".join(f"{x:.2f},{frame.y(p.mean):.2f}" for x, p in at)
            parts.append(f'<polygon class="band" data-series="{number}" fill="{colour}" '
                         f'points="{" ".join(band)}"/>')  # fmt: skip
            parts.append(f'<polyline class="mean-line" data-series="{number}" '
                         f'stroke="{colour}" points="{line}"/>')  # fmt: skip
        for x, p in at:
            tip = f"point {p.index}: {output} = {p.mean:.6g} [{p.lo:.6g}, {p.hi:.6g}]"
            parts.append(
                f'<line class="errorbar" stroke="{colour}" x1="{x:.2f}" y1="{frame.y(p.lo):.2f}"'
                f' x2="{x:.2f}" y2="{frame.y(p.hi):.2f}"/>'
                f'<circle class="point" data-series="{number}" data-point="{p.index}" '
                f'data-run="{_e(p.run)}" data-x="{_number(p.parameters[param])!r}" '
                f'data-mean="{p.mean!r}" data-lo="{p.lo!r}" data-hi="{p.hi!r}" '
                f'cx="{x:.2f}" cy="{frame.y(p.mean):.2f}" r="3" fill="{colour}">'
                f"<title>{_e(tip)}</title></circle>"
            )
    attrs = f'data-parameter="{_e(param)}" data-joined="{str(joined).lower()}"'
    svg = _svg("sweep", output, attrs, "".join(parts), f"mean of {output} against {param}")
    legend = ""
    if joined and others:
        legend = (
            '<ul class="legend">'
            + "".join(
                f'<li><span class="swatch" style="background:{PALETTE[n % len(PALETTE)]}"></span>'
                f"{_e(label)}</li>"
                for n, (label, _) in enumerate(series)
            )
            + "</ul>"
        )
    return f'<div class="sweep-chart">{svg}{legend}</div>'


def _output_figure(output: str, rows: list[dict[str, Any]], charted: list[str],
                   swept: list[str]) -> str:  # fmt: skip
    points, missing = _values(rows, output)
    if not points:
        body = '<p class="note">No point has a mean of this output yet.</p>'
    else:
        charts = []
        for param in charted:
            on_axis = [p for p in points if _number(p.parameters.get(param)) is not None]
            if on_axis:
                charts.append(_chart(output, param, on_axis, [o for o in swept if o != param]))
        body = "".join(charts)
    caption = (
        f"Mean of {output} over the ok sequences of each point's run, with its 95% "
        "confidence band (mean ± 1.96 sem). Lines join the points that share the other "
        "swept parameters."
    )
    if missing:
        caption += f" Not charted: {missing:,} points with no summary of {output} yet."
    return (
        f'<figure class="output" id="output-{_e(output)}"><h3>{_e(output)}</h3>'
        f'<div class="charts">{body}</div><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _points_table(rows: list[dict[str, Any]], swept: list[str], outputs: list[str]) -> str:
    head = "".join(f"<th>{_e(n)}</th>" for n in ["point", *swept, *outputs, "run", "state"])
    body = []
    for row in rows:
        cells = [f"<td>{row['point']}</td>"]
        cells += [f"<td>{_e(_short(row['parameters'].get(p)))}</td>" for p in swept]
        for o in outputs:
            s = row["outputs"].get(o) or {}
            mean, ci = s.get("mean"), s.get("ci95")
            text = "—" if mean is None else _num(mean)
            if mean is not None and ci:
                text += f" ± {(ci[1] - ci[0]) / 2:.2g}"
            cells.append(f'<td data-output="{_e(o)}">{_e(text)}</td>')
        cells.append(f"<td><code>{_e(row['run'])}</code></td>")
        cells.append(f'<td><span class="state state-{_e(row["state"])}">{_e(row["state"])}'
                     "</span></td>")  # fmt: skip
        body.append(f'<tr data-point="{row["point"]}">{"".join(cells)}</tr>')
    return (
        f'<table id="points" class="stats"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def build_experiment_report(doc: dict[str, Any], *, generated_at: float | None = None) -> str:
    """The experiment's report as one self-contained HTML document."""
    rows = point_rows(doc)
    swept = swept_parameters(doc["points"])
    outputs = list(dict.fromkeys(name for row in rows for name in row["outputs"]))
    charted = [p for p in swept
               if sum(_number(r["parameters"].get(p)) is not None for r in rows) > 1]  # fmt: skip
    notes = []
    if not swept:
        notes.append("The points do not differ in any parameter: nothing to chart.")
    if skipped := [p for p in swept if p not in charted]:
        notes.append("Not charted (values that are not numbers): " + ", ".join(skipped) + ".")
    figures = "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
    if charted:
        figures += "".join(_output_figure(o, rows, charted, swept) for o in outputs)
    name = doc.get("name") or doc["experiment"]
    state = doc.get("state", "")
    when = generated_at if generated_at is not None else dt.datetime.now(dt.UTC).timestamp()
    header = (
        f'<header><p class="kicker">Ancho experiment report</p><h1>{_e(name)}</h1>'
        f'<p class="subtitle">experiment <code>{_e(doc["experiment"])}</code> · '
        f'<span class="state state-{_e(state)}">{_e(state)}</span> · {len(rows):,} points'
        f" · swept: {_e(', '.join(swept) or 'nothing')}</p>"
        f'<p class="generated">Created {_time(doc.get("created_at"))}; generated '
        f"{_time(when)} by Ancho {_e(_version())}.</p></header>"
    )
    sections = [
        _section("points", "Points", _points_table(rows, swept, outputs)),
        _section("charts", "Means against the swept parameters", figures),
        _section("document", "Experiment document", f'<pre class="json">{_e(_json(doc))}</pre>'),
    ]
    title = f"{name} ({doc['experiment']}): Ancho experiment report"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="generator" content="Ancho {_e(_version())}">'
        f"<title>{_e(title)}</title><style>{CSS}{EXTRA_CSS}</style></head><body><main>"
        f"{header}{''.join(sections)}</main></body></html>\n"
    )
