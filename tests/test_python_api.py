"""``import ancho``: runs from Python on the embedded cluster and through a live server.

``ancho.run`` runs in this process, as ``ancho run`` does (embedded cluster, SQLite);
``ancho.connect`` talks to a real ``ancho server`` subprocess. Values are checked
against analytic answers within standard errors.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from e2e import EXAMPLES, MODELS, LiveServer, ancho
from test_report import parse

import ancho as api

pytestmark = pytest.mark.slow

BERNOULLI = {"model": {"source": str(MODELS / "bernoulli"), "entrypoint": "model:simulate"},
             "parameters": {"p": 0.3}, "sequences": 2000, "seed": 11}  # fmt: skip


def test_a_run_from_python_on_this_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'ancho.db'}"
    run = api.run(EXAMPLES / "pi", sequences=3000, parameters={"samples": 200}, seed=3,
                  store=store)  # fmt: skip
    assert isinstance(run, api.Run) and run.state == "FINISHED"
    summary = run.summary()
    p = math.pi / 4
    se = 4 * math.sqrt(p * (1 - p) / 200) / math.sqrt(3000)
    assert abs(summary["outputs"]["pi"]["mean"] - math.pi) < 4 * se
    assert summary["outputs"]["pi"]["count"] == 3000
    rows = list(run.rows())
    assert [r["sequence"] for r in rows] == list(range(3000))
    assert sum(r["outputs"]["pi"] for r in rows) / 3000 == pytest.approx(
        summary["outputs"]["pi"]["mean"], rel=1e-12
    )
    frame = run.results()
    assert list(frame.columns) == ["sequence", "status", "pi", "inside"]
    assert frame.shape == (3000, 4) and frame["sequence"].tolist() == list(range(3000))
    assert str(frame["pi"].dtype) == "float64" and str(frame["inside"].dtype) == "int64"
    assert (frame["status"] == "ok").all()
    assert frame["pi"].mean() == pytest.approx(summary["outputs"]["pi"]["mean"], rel=1e-12)
    assert list(run.results(columns=["inside"]).columns) == ["sequence", "status", "inside"]
    with pytest.raises(api.AnchoError, match="has no output 'nope'"):
        run.results(columns=["nope"])
    table = run.to_arrow(columns=["pi"])
    assert table.num_rows == 3000 and table.column("pi").to_pylist() == frame["pi"].tolist()
    stats = run.summary_frame()
    assert list(stats.index) == ["pi", "inside"]
    assert stats.loc["pi", "mean"] == summary["outputs"]["pi"]["mean"]
    assert stats.loc["inside", "count"] == 3000
    # Jupyter's view: state, progress, the summary table, a histogram of each output.
    page = parse(run._repr_html_())
    (view,) = page.find_all("div", cls="ancho-run")
    assert view.attrs["data-state"] == "FINISHED"
    assert page.one("div", cls="ancho-progress").attrs["data-ok"] == "3000"
    cell = page.one("tr", data_output="pi").one("td", data_stat="mean")
    assert cell.text() == f"{summary['outputs']['pi']['mean']:.6g}"
    for name in ("pi", "inside"):
        svg = page.one("svg", cls="ancho-histogram", data_output=name)
        assert sum(int(r.attrs["data-count"]) for r in svg.find_all("rect")) == 3000
    assert not page.find_all("script")
    # The CLI sees the same run in the same store.
    status = ancho("status", run.id, "--store", store, cwd=tmp_path).json()
    assert status["id"] == run.id and status["state"] == "FINISHED"
    assert any("run finished" in line.message for line in run.logs())
    assert run.kill() is False  # it has ended
    report = run.report(tmp_path / "pi.html")
    assert report.is_file() and "Ancho run report" in report.read_text()


def test_a_paired_comparison_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'ancho.db'}"
    low = api.run(BERNOULLI, store=store)
    high = api.run(BERNOULLI, parameters={"p": 0.6}, store=store)
    c = api.compare(low, high, output="hit")
    # Common random numbers: the hits differ only where u falls in [0.3, 0.6).
    assert c.paired is True
    half = (c.ci95[1] - c.ci95[0]) / 2
    sd = math.sqrt(0.3 * 0.7 / 2000)  # of the difference's mean: a Bernoulli(0.3) indicator
    assert abs(c.difference + 0.3) < 4 * sd and half == pytest.approx(1.959964 * sd, rel=0.15)


def test_a_sweep_from_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = f"sqlite:///{tmp_path / 'ancho.db'}"
    exp = api.sweep(BERNOULLI, grid={"p": [0.2, 0.7]}, sequences=400, store=store)
    assert isinstance(exp, api.Experiment) and exp.state == "FINISHED"
    frame = exp.frame()
    assert list(frame.columns[:4]) == ["point", "run", "state", "p"]
    assert frame["p"].tolist() == [0.2, 0.7] and (frame["state"] == "FINISHED").all()
    for _, row in frame.iterrows():
        assert abs(row["hit_mean"] - row["p"]) < 4 * math.sqrt(row["p"] * (1 - row["p"]) / 400)
        assert row["hit_ci95_lo"] < row["hit_mean"] < row["hit_ci95_hi"]
    low, high = exp.runs()
    assert [low.id, high.id] == frame["run"].tolist()
    # Common random numbers: sequence i draws the same numbers at every point.
    assert low.results()["x"].tolist() == high.results()["x"].tolist()
    page = exp.report(tmp_path / "sweep.html").read_text()
    assert 'class="chart sweep"' in page and 'data-parameter="p"' in page
    with pytest.raises(api.AnchoError, match="exactly one of grid=, points= or latin_hypercube="):
        api.sweep(BERNOULLI, store=store)
    with pytest.raises(api.SpecError, match="/sweep/grid/q"):
        api.sweep(BERNOULLI, grid={"q": [1, 2]}, store=store)


def test_bad_input_raises_the_cli_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("ANCHO_SERVER", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "no-config"))
    with pytest.raises(api.SpecError, match="no such model directory or spec file"):
        api.run(tmp_path / "missing", sequences=10)
    with pytest.raises(api.SpecError, match="/sequences"):
        api.run({**BERNOULLI, "sequences": 0})
    with pytest.raises(api.AnchoError, match="no server"):
        api.connect()
    assert not (tmp_path / ".ancho" / "ancho.db").exists()  # nothing was stored


def test_a_run_through_a_server(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'ancho.db'}"
    added = ancho("user", "add", "ann", "--store", store, cwd=tmp_path)
    assert added.code == 0, added.stderr
    server = LiveServer(store, tmp_path).start()
    try:
        client = api.connect(server.url, added.json()["token"])
        run = client.submit(MODELS / "bernoulli", sequences=400, parameters={"p": 0.5}, seed=2)
        assert run.state in ("QUEUED", "STAGING", "RUNNING", "SUMMARIZING", "FINISHED")
        assert run.wait(progress=False, timeout_s=120) is run and run.state == "FINISHED"
        hit = run.summary()["outputs"]["hit"]
        assert hit["count"] == 400 and abs(hit["mean"] - 0.5) < 4 * math.sqrt(0.25 / 400)
        frame = run.results()  # through the API's JSON lines
        assert str(frame["hit"].dtype) == "bool" and str(frame["x"].dtype) == "float64"
        assert frame["hit"].mean() == pytest.approx(hit["mean"], rel=1e-12)
        svg = parse(run._repr_html_()).one("svg", cls="ancho-histogram", data_output="x")
        assert sum(int(r.attrs["data-count"]) for r in svg.find_all("rect")) == 400
        exp = client.submit(MODELS / "bernoulli", sweep={"points": [{"p": 0.1}, {"p": 0.9}]},
                            sequences=200, parameters={"p": 0.5})  # fmt: skip
        assert isinstance(exp, api.Experiment)
        assert exp.wait(timeout_s=120).state == "FINISHED"
        assert exp.frame()["p"].tolist() == [0.1, 0.9]
        assert [r.id for r in client.runs()][-1] == run.id  # newest first: the sweep's two
        assert client.run(run.id).id == run.id
        with pytest.raises(api.AnchoError, match="nope"):
            client.run("nope")
        other = api.connect(server.url, "not-a-token")
        with pytest.raises(api.AnchoError, match="token"):
            other.runs()
    finally:
        assert server.stop() == 0


def test_result_columns_across_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Typed columns whatever the chunks: failed sequences are NaN, non-finite strings
    (the API's JSON) are floats, a column that mixes kinds becomes object."""
    from ancho import frames

    monkeypatch.setattr(frames, "CHUNK", 3)
    rows = [(i, "ok", {"x": i * 0.5, "n": i, "b": i % 2 == 0, "s": "a" if i < 4 else 1})
            for i in range(7)]  # fmt: skip
    rows[5] = (5, "failed", {})
    rows[6] = (6, "ok", {"x": "-inf", "n": 6, "b": True, "s": 2})
    cols = frames.result_columns(rows, ["x", "n", "b", "s"])
    assert cols["sequence"].tolist() == list(range(7))
    assert cols["x"].dtype == np.float64 and cols["x"][6] == -math.inf
    assert math.isnan(cols["x"][5]) and cols["x"][:5].tolist() == [0, 0.5, 1, 1.5, 2]
    assert cols["n"].dtype == np.float64 and math.isnan(cols["n"][5])  # NaN for the failed
    assert cols["b"].dtype == object and cols["b"][5] is None
    assert cols["s"].dtype == object and cols["s"].tolist()[:4] == ["a"] * 4
    frame = frames.results_frame(cols)
    assert frame["status"].tolist() == ["ok"] * 5 + ["failed", "ok"]


def test_public_names_are_not_hidden_by_submodules() -> None:
    """A submodule named like a public function (``ancho/compare.py``, ``ancho/sweep.py``)
    becomes the package's attribute once imported, hiding the function: none may."""
    import importlib
    import pkgutil
    import types

    for info in pkgutil.iter_modules(api.__path__):
        if not info.ispkg:
            importlib.import_module(f"ancho.{info.name}")
    for name in api.__all__:
        assert not isinstance(getattr(api, name), types.ModuleType), name
