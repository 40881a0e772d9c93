"""A run as Jupyter shows it (``Run._repr_html_``): its state and progress, the summary
table, and a small histogram of each numeric output once the run has ended.

The histograms are the one histogram of :mod:`ancho.histogram`, as the report and the
web page draw it (a document of edges and counts from the backend), drawn here as inline
SVG bars with their counts in ``data-`` attributes. Every value is escaped; the HTML
holds no script and no external URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .partials import Z95
from .report import _e, _num  # the report's escaping and number format

__all__ = ["run_html"]

WIDTH, HEIGHT = 220, 56
STATS = ("count", "mean", "stddev", "min", "max")


def _progress(doc: Mapping[str, Any]) -> str:
    counts = doc.get("counts") or {}
    total = int(counts.get("total") or doc.get("sequences") or 0)
    ok, failed = int(counts.get("ok") or 0), int(counts.get("failed") or 0)
    share = (ok + failed) / total if total else 0.0
    return (
        f'<div class="ancho-progress" data-ok="{ok}" data-failed="{failed}" data-total="{total}"'
        ' style="display:flex;align-items:center;gap:0.5em">'
        '<span style="display:inline-block;width:12em;height:0.7em;background:#e3e7eb">'
        f'<span style="display:block;height:100%;width:{100 * share:.1f}%;background:#2f8f46">'
        f"</span></span><span>{ok + failed:,} / {total:,}"
        + (f" ({failed:,} failed)" if failed else "")
        + "</span></div>"
    )


def _summary_table(summary: Mapping[str, Any]) -> str:
    outputs = summary.get("outputs") or {}
    if not outputs:
        return ""
    head = "".join(f"<th>{s}</th>" for s in ("output", *STATS, "± 95%"))
    rows = []
    for name, stats in outputs.items():
        sem = stats.get("sem")
        half = f"{Z95 * sem:.2g}" if isinstance(sem, int | float) else "—"
        cells = "".join(f'<td data-stat="{s}">{_e(_num(stats.get(s)))}</td>' for s in STATS)
        rows.append(f'<tr data-output="{_e(name)}"><th>{_e(name)}</th>{cells}'
                    f'<td data-stat="ci95_half">{half}</td></tr>')  # fmt: skip
    return (
        '<table class="ancho-summary"><thead><tr>'
        f"{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _histogram_svg(doc: Mapping[str, Any]) -> str:
    counts, edges = list(doc.get("counts") or []), list(doc.get("edges") or [])
    if not counts:
        return ""
    top = max(max(counts), 1)
    width = WIDTH / len(counts)
    bars = "".join(
        f'<rect data-count="{c}" data-lo="{lo!r}" data-hi="{hi!r}" x="{i * width:.2f}"'
        f' y="{HEIGHT - HEIGHT * c / top:.2f}" width="{max(width - 0.5, 0.5):.2f}"'
        f' height="{HEIGHT * c / top:.2f}" fill="#4a7fc1"><title>[{lo:.4g}, {hi:.4g}): {c:,}'
        "</title></rect>"
        for i, (c, lo, hi) in enumerate(zip(counts, edges[:-1], edges[1:], strict=True))
    )
    name = _e(doc.get("output", ""))
    return (
        f'<figure style="display:inline-block;margin:0 1em 0 0"><svg class="ancho-histogram"'
        f' data-output="{name}" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}"'
        f' height="{HEIGHT}" role="img" aria-label="histogram of {name}">{bars}</svg>'
        f'<figcaption style="font-size:0.8em">{name}: {edges[0]:.4g} … {edges[-1]:.4g}'
        "</figcaption></figure>"
    )


def run_html(doc: Mapping[str, Any], summary: Mapping[str, Any] | None,
             histograms: list[Mapping[str, Any]]) -> str:  # fmt: skip
    """The run document, its summary (None before it exists) and histogram documents."""
    state = _e(doc.get("state", ""))
    head = (
        f'<div class="ancho-run" data-run="{_e(doc.get("id", ""))}" data-state="{state}">'
        f"<p><b>ancho run {_e(doc.get('id', ''))}</b> {_e(doc.get('name', ''))} · "
        f'<span class="ancho-state">{state}</span></p>'
    )
    reason = doc.get("reason")
    body = _progress(doc)
    if reason:
        body += f'<p class="ancho-reason">{_e(reason)}</p>'
    if summary is not None:
        body += _summary_table(summary)
    body += "".join(_histogram_svg(h) for h in histograms)
    return head + body + "</div>"
