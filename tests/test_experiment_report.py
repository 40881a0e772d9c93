"""``ancho experiment report``: each output's mean and 95% band against each swept
parameter, read back from the HTML with the run report's parser.

These tests build experiment documents by hand (the report needs nothing else) for what
the shape of a sweep decides: a grid joins points into one series per value of the
other parameters, a Latin hypercube gets markers only, unfinished points and
non-numeric parameters are left out and said so. ``tests/test_experiments.py`` runs a
real sweep and writes its report through the CLI.
"""

from __future__ import annotations

import itertools
from itertools import pairwise
from typing import Any

from test_report import Node, check_self_contained, parse

from ancho.experiment_report import build_experiment_report, swept_parameters
from ancho.partials import Z95


def _doc(points: list[dict[str, Any]], mean: Any, sem: float = 0.05,
         unfinished: tuple[int, ...] = ()) -> dict[str, Any]:  # fmt: skip
    """An experiment document whose output ``y`` has mean ``mean(parameters)``."""
    rows = []
    for i, params in enumerate(points):
        summary = None
        if i not in unfinished:
            stats = {"count": 100, "mean": mean(params), "sem": sem}
            summary = {"state": "FINISHED", "outputs": {"y": stats}}
        rows.append({"parameters": {"n": 10, **params}, "run": f"run{i}",
                     "state": "RUNNING" if i in unfinished else "FINISHED",
                     "summary": summary})  # fmt: skip
    return {"experiment": "exp1", "name": "sweep <b>", "created_at": 1.0e9,
            "state": "RUNNING" if unfinished else "FINISHED", "points": rows}  # fmt: skip


def _charts(page: Node, parameter: str) -> list[Node]:
    return page.find_all("svg", cls="sweep", data_parameter=parameter)


def _markers(svg: Node) -> list[dict[str, float]]:
    return [{k: float(c.attrs[f"data-{k}"]) for k in ("x", "mean", "lo", "hi", "series")}
            for c in svg.find_all("circle", cls="point")]  # fmt: skip


def test_a_grid_is_one_band_per_value_of_the_other_parameter() -> None:
    grid = [{"k": k, "s": s} for k, s in itertools.product([90, 100, 110], [0.1, 0.2])]
    doc = _doc(grid, lambda p: p["k"] * p["s"])
    text = build_experiment_report(doc)
    page = parse(text)
    check_self_contained(page, text)
    assert swept_parameters(doc["points"]) == ["k", "s"]  # "n" is the same everywhere
    assert "sweep &lt;b&gt;" in text and "<b>" not in text.split("<pre")[0]
    assert len(page.one("table", id="points").find_all("tr", data_point="0")) == 1

    (against_k,) = _charts(page, "k")
    assert against_k.attrs["data-joined"] == "true"
    markers = _markers(against_k)
    assert len(markers) == 6
    for m in markers:  # each marker is its point's mean and mean ± 1.96 sem
        s = 0.1 if m["series"] == 0 else 0.2
        assert m["mean"] == m["x"] * s
        assert abs(m["lo"] - (m["mean"] - Z95 * 0.05)) < 1e-12
        assert abs(m["hi"] - (m["mean"] + Z95 * 0.05)) < 1e-12
    bands = against_k.find_all("polygon", cls="band")
    lines = against_k.find_all("polyline", cls="mean-line")
    assert len(bands) == len(lines) == 2  # one per value of s
    for line in lines:  # left to right along k, and up the page as the mean grows
        xy = [tuple(map(float, p.split(","))) for p in line.attrs["points"].split()]
        assert len(xy) == 3
        assert all(b[0] > a[0] and b[1] < a[1] for a, b in pairwise(xy))
    assert all(len(b.attrs["points"].split()) == 6 for b in bands)  # upper edge, lower edge
    legend = [li.text() for li in page.find_all("li")]
    assert legend.count("s=0.1") == 1 and legend.count("s=0.2") == 1

    (against_s,) = _charts(page, "s")
    assert len(against_s.find_all("polyline", cls="mean-line")) == 3  # one per k
    assert len(page.find_all("svg", cls="sweep")) == 2  # one output, two parameters


def test_a_hypercube_gets_markers_with_error_bars_and_no_lines() -> None:
    points = [{"a": 0.1 + 0.07 * i, "b": 3.0 - 0.2 * i} for i in range(9)]
    page = parse(build_experiment_report(_doc(points, lambda p: p["a"] + p["b"])))
    for parameter in ("a", "b"):
        (svg,) = _charts(page, parameter)
        assert svg.attrs["data-joined"] == "false"
        assert not svg.find_all("polyline") and not svg.find_all("polygon")
        assert len(_markers(svg)) == len(svg.find_all("line", cls="errorbar")) == 9


def test_unfinished_points_and_words_are_left_out_and_said_so() -> None:
    points = [{"p": p, "label": lab} for p in (0.2, 0.5, 0.8) for lab in ("x", "y")]
    page = parse(build_experiment_report(_doc(points, lambda p: p["p"], unfinished=(1, 4))))
    (svg,) = _charts(page, "p")
    assert sorted(m["x"] for m in _markers(svg)) == [
        0.2,
        0.5,
        0.5,
        0.8,
    ]  # points 1 (0.2, y) and 4 (0.8, x) have no summary
    assert not _charts(page, "label")
    notes = " ".join(n.text() for n in page.find_all("p", cls="note"))
    assert "Not charted (values that are not numbers): label." in notes
    caption = page.one("figure", id="output-y").one("figcaption").text()
    assert "Not charted: 2 points with no summary of y yet." in caption
    state = page.one("tr", data_point="1").find_all("span", cls="state")[0].text()
    assert state == "RUNNING"
    assert page.one("tr", data_point="1").one("td", data_output="y").text() == "—"


def test_points_that_do_not_differ_have_nothing_to_chart() -> None:
    page = parse(build_experiment_report(_doc([{"p": 1}, {"p": 1}], lambda p: 0.5)))
    assert not page.find_all("svg")
    notes = " ".join(n.text() for n in page.find_all("p", cls="note"))
    assert "do not differ in any parameter" in notes
