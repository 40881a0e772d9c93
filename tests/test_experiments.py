"""Experiments end to end (DESIGN.md, "Experiments"): ``ancho run SWEEP.json`` on the
embedded cluster and ``ancho submit SWEEP.json --wait`` through a live server, the
experiment commands on both backends, the REST endpoints, and refusals."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from e2e import EXAMPLES, MODELS, LiveServer, ancho, write_spec
from test_report import parse

from ancho.client import pack

pytestmark = pytest.mark.slow

#: Bernoulli(p) hits and a normal draw per sequence; ``label`` is not read by the model.
SWEEP: dict[str, Any] = {
    "name": "coins",
    "model": {"source": str(MODELS / "bernoulli"), "entrypoint": "model:simulate"},
    "parameters": {"p": 0.5, "label": "x"},
    "sequences": 400,
    "seed": 5,
    "sweep": {"grid": {"p": [0.2, 0.7], "label": ["a", "b"]}},
}
POINTS = [{"p": 0.2, "label": "a"}, {"p": 0.2, "label": "b"},
          {"p": 0.7, "label": "a"}, {"p": 0.7, "label": "b"}]  # fmt: skip


def _check_points(points: list[dict[str, Any]]) -> None:
    """Four points in grid order, each run's hit rate within 4 standard errors of its p."""
    assert [p["parameters"] for p in points] == POINTS
    assert len({p["run"] for p in points}) == 4
    for point in points:
        p = point["parameters"]["p"]
        hit = point["summary"]["outputs"]["hit"]
        assert hit["count"] == 400
        assert abs(hit["mean"] - p) < 4 * math.sqrt(p * (1 - p) / 400), point


def _x_column(run_id: str, cwd: Path, env: dict[str, str] | None = None) -> list[float]:
    rows = ancho("results", run_id, cwd=cwd, env=env).jsonl()
    return [r["outputs"]["x"] for r in rows]


def test_a_local_sweep_runs_every_point_with_common_random_numbers(tmp_path: Path) -> None:
    run = ancho("run", str(write_spec(tmp_path, SWEEP)), "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    doc = run.json()
    assert set(doc) == {"experiment", "points"}
    assert all(set(p) == {"parameters", "run", "summary"} for p in doc["points"])
    _check_points(doc["points"])
    assert doc["experiment"] in run.stderr  # "experiment <id> (4 points)"
    # Common random numbers: sequence i of every point draws the same numbers, so the
    # normal draw after the coin is the same in every run.
    columns = [_x_column(p["run"], tmp_path) for p in doc["points"]]
    assert len(columns[0]) == 400 and all(c == columns[0] for c in columns)

    exp = doc["experiment"]
    listed = ancho("experiment", "list", "--json", cwd=tmp_path).jsonl()
    assert [(e["id"], e["name"], len(e["points"])) for e in listed] == [(exp, "coins", 4)]
    status = ancho("experiment", "status", exp, cwd=tmp_path).json()
    assert status["state"] == "FINISHED"
    assert [p["state"] for p in status["points"]] == ["FINISHED"] * 4
    rows = ancho("experiment", "results", exp, cwd=tmp_path).jsonl()
    assert [r["parameters"] for r in rows] == POINTS
    first = rows[0]["outputs"]["hit"]
    lo, hi = first["ci95"]
    assert lo < first["mean"] < hi and hi - lo == pytest.approx(2 * 1.959964 * first["sem"])
    csv = ancho("experiment", "results", exp, "--format", "csv", cwd=tmp_path).stdout
    lines = csv.splitlines()
    assert lines[0] == ("point,run,state,p,label,hit_mean,hit_sem,hit_ci95_lo,hit_ci95_hi,"
                        "x_mean,x_sem,x_ci95_lo,x_ci95_hi")  # fmt: skip
    assert len(lines) == 5 and lines[1].startswith(f"0,{rows[0]['run']},FINISHED,0.2,a,")
    # The table for people: one row per point.
    table = ancho("experiment", "status", exp, "--format", "table", cwd=tmp_path).stdout
    assert table.splitlines()[0] == f"experiment {exp}" and table.count("FINISHED") == 4
    # The report: each output's mean and band against p, one line per label.
    report = ancho("experiment", "report", exp, "-o", "sweep.html", cwd=tmp_path)
    assert report.code == 0 and f"report of experiment {exp} (FINISHED)" in report.stdout
    page = parse((tmp_path / "sweep.html").read_text())
    assert not page.find_all("svg", data_parameter="label")
    for output in ("hit", "x"):
        (svg,) = page.find_all("svg", cls="sweep", data_output=output, data_parameter="p")
        assert len(svg.find_all("polyline", cls="mean-line")) == 2
        marked = {c.attrs["data-run"]: c for c in svg.find_all("circle", cls="point")}
        assert set(marked) == {r["run"] for r in rows}
        for row in rows:
            stats, c = row["outputs"][output], marked[row["run"]]
            assert float(c.attrs["data-x"]) == row["parameters"]["p"]
            assert float(c.attrs["data-mean"]) == stats["mean"]
            assert [float(c.attrs["data-lo"]), float(c.attrs["data-hi"])] == stats["ci95"]
    bad = ancho("experiment", "report", "nope", "-o", "x.html", cwd=tmp_path)
    assert bad.code == 2 and "nope" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ({"grid": {}}, "/sweep/grid: must sweep at least one parameter"),
        ({"grid": {"q": [1]}}, "/sweep/grid/q: 'q' is not one of the spec's parameters"),
        ({"latin_hypercube": {"points": 3, "ranges": {"p": [0.5, 0.1]}}},
         "/sweep/latin_hypercube/ranges/p: lo (0.5) must be < hi (0.1)"),
        ({"grid": {"p": [0.5] * 101, "label": ["a"] * 100}},
         "/sweep/grid: has 10,100 points; at most 10,000"),
    ],
    ids=["empty-grid", "unknown-name", "lo-above-hi", "too-many"],
)  # fmt: skip
def test_a_bad_sweep_exits_2_naming_its_path_and_creates_nothing(
    tmp_path: Path, sweep: dict[str, Any], message: str
) -> None:
    run = ancho("run", str(write_spec(tmp_path, {**SWEEP, "sweep": sweep})), cwd=tmp_path)
    assert run.code == 2 and message in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    assert ancho("experiment", "list", "--json", cwd=tmp_path).stdout == ""
    assert ancho("list", "--json", cwd=tmp_path).stdout == ""


def test_a_sweep_through_the_server(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ancho.db'}"
    tokens = {}
    for name in ("alice", "bob"):
        added = ancho("user", "add", name, "--store", store, cwd=tmp_path)
        assert added.code == 0, added.stderr
        tokens[name] = added.json()["token"]
    server = LiveServer(store, tmp_path).start()
    env = {"ANCHO_SERVER": server.url, "ANCHO_TOKEN": tokens["alice"],
           "XDG_CONFIG_HOME": str(tmp_path / "no-config")}  # fmt: skip
    try:
        sub = ancho("submit", str(write_spec(tmp_path, SWEEP)), "--wait", cwd=tmp_path, env=env)
        assert sub.code == 0, sub.stderr
        first = sub.stdout.splitlines()[0]
        assert first.startswith("experiment ") and first.endswith("(4 points)")
        exp = first.split()[1]
        assert sub.stdout.count("FINISHED") == 4  # the table, one row per point
        status, doc, _ = server.request("GET", f"/api/v1/experiments/{exp}", tokens["alice"])
        assert status == 200 and doc["state"] == "FINISHED"
        _check_points(doc["points"])
        columns = [_x_column(p["run"], tmp_path, env) for p in doc["points"]]
        assert all(c == columns[0] for c in columns)
        # The same through the CLI's server backend.
        listed = ancho("experiment", "list", "--json", cwd=tmp_path, env=env).jsonl()
        assert [e["id"] for e in listed] == [exp]
        rows = ancho("experiment", "results", exp, cwd=tmp_path, env=env).jsonl()
        assert [r["parameters"] for r in rows] == POINTS
        # Another user sees none of it.
        status, _, _ = server.request("GET", f"/api/v1/experiments/{exp}", tokens["bob"])
        assert status == 404
        status, mine, _ = server.request("GET", "/api/v1/experiments", tokens["bob"])
        assert status == 200 and mine == {"experiments": []}
        # POST: a sweep goes to /experiments, and a spec without one is refused there.
        source = _upload(server, tokens["alice"])
        spec = {**SWEEP, "model": {**SWEEP["model"], "source": source}}
        status, doc, _ = server.request("POST", "/api/v1/runs", tokens["alice"], spec)
        assert status == 400 and doc["details"][0]["path"] == "/sweep", doc
        plain = {k: v for k, v in spec.items() if k != "sweep"}
        status, doc, _ = server.request("POST", "/api/v1/experiments", tokens["alice"], plain)
        assert status == 400 and doc["details"] == [{"path": "/sweep", "message": "is required"}]
        bad = {**spec, "sweep": {"points": [{"p": 0.1}, {"q": 1}]}}
        status, doc, _ = server.request("POST", "/api/v1/experiments", tokens["alice"], bad)
        assert status == 400 and doc["details"][0]["path"] == "/sweep/points/1/q", doc
        status, doc, _ = server.request("POST", "/api/v1/experiments", tokens["alice"], spec)
        assert status == 201 and len(doc["runs"]) == 4, doc
    finally:
        assert server.stop() == 0


def _upload(server: LiveServer, token: str) -> str:
    status, doc, _ = server.request("POST", "/api/v1/models", token, pack(MODELS / "bernoulli"),
                                    {"Content-Type": "application/gzip"})  # fmt: skip
    assert status == 201, doc
    return str(doc["source"])


def _black_scholes_call(s0: float, k: float, r: float, sigma: float, t: float) -> float:
    d1 = (math.log(s0 / k) + (r + sigma**2 / 2) * t) / (sigma * math.sqrt(t))
    d2 = d1 - sigma * math.sqrt(t)

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf(x / math.sqrt(2)))

    return s0 * cdf(d1) - k * math.exp(-r * t) * cdf(d2)


def test_paired_comparison_of_two_strikes_is_narrower_and_covers_black_scholes(
    tmp_path: Path,
) -> None:
    params = {"spot": 100.0, "strike": 100.0, "rate": 0.03, "sigma": 0.2, "maturity": 1.0,
              "steps": 4}  # fmt: skip
    spec = {"model": {"source": str(EXAMPLES / "option"), "entrypoint": "model:simulate",
                      "setup": "model:setup"},
            "parameters": params, "sequences": 4000, "seed": 17,
            "sweep": {"points": [{"strike": 100.0}, {"strike": 101.0}]}}  # fmt: skip
    run = ancho("run", str(write_spec(tmp_path, spec)), "--json", cwd=tmp_path)
    assert run.code == 0, run.stderr
    at_100, at_101 = (p["run"] for p in run.json()["points"])
    paired = ancho("compare", at_100, at_101, "--output", "payoff", "--json", cwd=tmp_path)
    assert paired.code == 0, paired.stderr
    p = paired.json()
    # The same pair at another seed for point B: unpaired, Welch.
    other = ancho("run", str(write_spec(tmp_path, {**spec, "seed": 18}, "other.json")), "--json",
                  cwd=tmp_path)  # fmt: skip
    unpaired_b = other.json()["points"][1]["run"]
    w = ancho("compare", at_100, unpaired_b, "--output", "payoff", "--json", cwd=tmp_path).json()
    exact = _black_scholes_call(100, 100, 0.03, 0.2, 1) - _black_scholes_call(100, 101, 0.03,
                                                                              0.2, 1)  # fmt: skip
    assert p["paired"] is True and w["paired"] is False and w["variance_reduction"] == 1.0
    for c in (p, w):
        assert c["output"] == "payoff" and c["ci95"][0] < exact < c["ci95"][1], (c, exact)
    width_p, width_w = p["ci95"][1] - p["ci95"][0], w["ci95"][1] - w["ci95"][0]
    assert width_w > 5 * width_p, (width_p, width_w)
    assert p["variance_reduction"] > 25
    text = ancho("compare", at_100, at_101, cwd=tmp_path)
    assert text.code == 0 and "paired over 4,000 sequences" in text.stdout
    bad = ancho("compare", at_100, at_101, "--output", "nope", cwd=tmp_path)
    assert bad.code == 2 and "has no output 'nope'" in bad.stderr and "Traceback" not in bad.stderr
