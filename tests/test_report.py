"""``ancho report``: the HTML report's content, the PDF's text, and bad input.

The end-to-end tests run the real ``ancho run`` (examples/pi, and tests/models/flaky for
failures), then ``ancho report``, and read the report back with ``html.parser``: the
summary table against ``ancho summary --format json``, each histogram's bars against the
values of ``ancho results``, the ECDF, the failures, the spec, and that nothing in it
points outside the file. The PDF is read with pypdf. Faster tests call ``build_report``
directly for what a small run cannot show (sampling, booleans, non-finite values).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e import EXAMPLES, MODELS, ancho, run_id_of, write_spec

from ancho.histogram import stream_histogram
from ancho.report import build_report
from ancho.results import SequenceResult
from ancho.server import web
from ancho.store import RunRecord, open_store

slow = pytest.mark.slow

VOID = {"meta", "link", "br", "img", "input", "hr", "col", "area", "base", "source", "wbr"}
URL_ATTRIBUTES = {"src", "href", "xlink:href", "action", "data", "poster", "srcset", "formaction"}


# ---------------------------------------------------------------------------------------
# A small DOM from html.parser
# ---------------------------------------------------------------------------------------


@dataclass
class Node:
    """An element: tag, attributes, children (elements and text)."""

    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    def text(self) -> str:
        """All text inside, concatenated."""
        return "".join(c if isinstance(c, str) else c.text() for c in self.children)

    def iter(self) -> Iterator[Node]:
        """This element and every element inside, in document order."""
        yield self
        for c in self.children:
            if isinstance(c, Node):
                yield from c.iter()

    def find_all(self, tag: str, **attrs: str) -> list[Node]:
        """Elements with this tag whose attributes include ``attrs`` (class: one of its classes)."""
        found = []
        for node in self.iter():
            if node.tag != tag:
                continue
            ok = all(
                v in node.attrs.get("class", "").split()
                if k == "cls"
                else node.attrs.get(k.replace("_", "-")) == v
                for k, v in attrs.items()
            )
            if ok:
                found.append(node)
        return found

    def one(self, tag: str, **attrs: str) -> Node:
        """The single element matching, or fail."""
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, (tag, attrs, len(found))
        return found[0]


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def parse(text: str) -> Node:
    """The document as a tree of :class:`Node`."""
    builder = _Builder()
    builder.feed(text)
    builder.close()
    return builder.root


# ---------------------------------------------------------------------------------------
# Checks shared by the tests
# ---------------------------------------------------------------------------------------


def printed(value: Any) -> str:
    """How the report prints a statistic (6 significant digits, integers with commas)."""
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:.6g}"


def check_summary_table(doc: Node, summary: dict[str, Any]) -> None:
    """Every statistic and quantile in the tables equals the summary JSON as printed."""
    table = doc.one("table", id="summary-table")
    quantiles = doc.one("table", id="quantiles-table")
    assert summary["outputs"]
    for name, stats in summary["outputs"].items():
        row = table.one("tr", data_output=name)
        for stat in ("count", "mean", "stddev", "sem", "min", "max", "skewness", "kurtosis"):
            cell = row.one("td", data_stat=stat).text()
            assert cell == printed(stats[stat]), (name, stat, cell, stats[stat])
        mean = float(row.one("td", data_stat="mean").text())
        assert mean == pytest.approx(stats["mean"], rel=5e-6)
        qrow = quantiles.one("tr", data_output=name)
        for q, value in stats["quantiles"].items():
            assert qrow.one("td", data_quantile=q).text() == printed(value), (name, q)


def check_histogram(doc: Node, name: str, values: np.ndarray) -> None:
    """Bars sum to the number of values, and each bar counts exactly its bin's values."""
    svg = doc.one("svg", cls="histogram", data_output=name)
    bars = svg.find_all("rect", cls="bar")
    counts = [int(b.attrs["data-count"]) for b in bars]
    assert sum(counts) == values.size == int(svg.attrs["data-total"])
    assert svg.attrs["data-exact"] == "true"
    assert 2 <= len(bars) <= 41
    for i, bar in enumerate(bars):
        lo, hi = float(bar.attrs["data-lo"]), float(bar.attrs["data-hi"])
        upper = values <= hi if i == len(bars) - 1 else values < hi
        assert counts[i] == int(np.count_nonzero((values >= lo) & upper)), (name, i, lo, hi)
        if i:
            assert lo == float(bars[i - 1].attrs["data-hi"])  # contiguous bins
    assert float(bars[0].attrs["data-lo"]) <= values.min()
    assert float(bars[-1].attrs["data-hi"]) >= values.max()


def check_ecdf(doc: Node, name: str) -> None:
    """The ECDF is a monotone step line from 0 to exactly 1."""
    svg = doc.one("svg", cls="ecdf", data_output=name)
    assert float(svg.attrs["data-final"]) == 1.0
    line = svg.one("polyline", cls="ecdf-line")
    points = [tuple(map(float, p.split(","))) for p in line.attrs["points"].split()]
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    assert ys[0] == pytest.approx(float(svg.attrs["data-y0"]))
    assert ys[-1] == pytest.approx(float(svg.attrs["data-y1"]))  # F = 1
    assert all(b <= a + 1e-9 for a, b in pairwise(ys))  # pixel rows go up: F grows
    assert all(b >= a - 1e-9 for a, b in pairwise(xs))


def check_self_contained(doc: Node, text: str) -> None:
    """No script, no external resource: nothing the file would fetch."""
    tags = {n.tag for n in doc.iter()}
    assert not tags & {"script", "link", "iframe", "object", "embed", "img", "base"}, tags
    for node in doc.iter():
        for key, value in node.attrs.items():
            assert not key.startswith("on"), (node.tag, key)  # no inline handlers
            if key in URL_ATTRIBUTES:
                assert value.startswith("#"), (node.tag, key, value)
    style = "".join(s.text() for s in doc.find_all("style"))
    assert "url(" not in style and "@import" not in style
    assert "http://" not in text and "https://" not in text
    assert "javascript:" not in text.lower()


def ok_values(rows: list[dict[str, Any]], name: str) -> np.ndarray:
    return np.array([r["outputs"][name] for r in rows if r["status"] == "ok"], dtype=float)


# ---------------------------------------------------------------------------------------
# End to end: ancho run, then ancho report
# ---------------------------------------------------------------------------------------


@dataclass
class Runs:
    folder: Path
    pi: str
    flaky: str


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    """Two real runs in one store: pi (2,000 sequences) and flaky (about 20% fail)."""
    folder = tmp_path_factory.mktemp("report")
    pi = ancho("run", str(EXAMPLES / "pi"), "--sequences", "2000", "-p", "samples=200",
               "--json", cwd=folder)  # fmt: skip
    assert pi.code == 0, pi.stderr
    spec = {
        "name": "flaky <report>",
        "model": {"source": str(MODELS / "flaky"), "entrypoint": "model:simulate"},
        "parameters": {"p_fail": 0.2},
        "sequences": 1000,
        "seed": 11,
    }
    flaky = ancho("run", str(write_spec(folder, spec)), "--json", cwd=folder)
    assert flaky.code == 1, flaky.stderr
    return Runs(folder, run_id_of(pi), run_id_of(flaky))


def report(runs: Runs, run_id: str, name: str, *flags: str) -> tuple[Path, float]:
    """``ancho report RUN -o NAME [flags]``: the file and how long the command took."""
    started = time.monotonic()
    done = ancho("report", run_id, "-o", name, *flags, cwd=runs.folder)
    elapsed = time.monotonic() - started
    assert done.code == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert name in done.stdout and run_id in done.stdout
    return runs.folder / name, elapsed


@slow
def test_html_report_of_pi_matches_summary_results_and_spec(runs: Runs) -> None:
    path, elapsed = report(runs, runs.pi, "pi.html")
    assert elapsed < 60
    text = path.read_text(encoding="utf-8")
    doc = parse(text)
    summary = ancho("summary", runs.pi, "--format", "json", cwd=runs.folder).json()
    rows = ancho("results", runs.pi, "--format", "jsonl", cwd=runs.folder).jsonl()

    title = doc.one("head").one("title").text()
    assert runs.pi in title and "pi" in title
    header = doc.one("header").text()
    assert runs.pi in header and "FINISHED" in header and "seed 42" in header
    assert "2,000 sequences: 2,000 ok, 0 failed" in header

    check_summary_table(doc, summary)
    assert set(summary["outputs"]) == {"pi", "inside"}
    for name in summary["outputs"]:
        values = ok_values(rows, name)
        assert values.size == summary["ok"] == 2000
        check_histogram(doc, name, values)
        check_ecdf(doc, name)
    # inside is an integer output: one bin per integer (its range is under 40 values).
    inside = doc.one("svg", cls="histogram", data_output="inside").find_all("rect", cls="bar")
    assert all(float(b.attrs["data-hi"]) - float(b.attrs["data-lo"]) == 1.0 for b in inside)
    # One histogram: the web page's route gives these very bins and counts.
    store = open_store(f"sqlite:///{runs.folder / '.ancho' / 'ancho.db'}")
    for name, stats in summary["outputs"].items():
        served = stream_histogram(lambda stop: store.iter_results(runs.pi, 0, stop), name,
                               web.DEFAULT_BINS, (stats["min"], stats["max"]))  # fmt: skip
        bars = doc.one("svg", cls="histogram", data_output=name).find_all("rect", cls="bar")
        assert served["counts"] == [int(b.attrs["data-count"]) for b in bars]
        assert served["edges"][:-1] == [float(b.attrs["data-lo"]) for b in bars]
        assert served["edges"][-1] == float(bars[-1].attrs["data-hi"])

    spec = json.loads(doc.one("pre", id="spec-json").text())
    assert spec["sequences"] == 2000 and spec["seed"] == 42
    assert spec["parameters"] == {"samples": 200}
    assert spec["model"]["entrypoint"] == "model:simulate"
    assert "No sequence failed." in doc.one("section", id="failures").text()
    assert "no custom summary" in doc.one("section", id="custom").text()
    check_self_contained(doc, text)


@slow
def test_html_report_of_a_failed_run_lists_its_failures(runs: Runs) -> None:
    path, _ = report(runs, runs.flaky, "flaky.html")
    text = path.read_text(encoding="utf-8")
    doc = parse(text)
    summary = ancho("summary", runs.flaky, "--format", "json", cwd=runs.folder).json()
    rows = ancho("results", runs.flaky, cwd=runs.folder).jsonl()
    failed = [r for r in rows if r["status"] == "failed"]
    assert summary["state"] == "FAILED" and len(failed) == summary["failed"] > 100

    header = doc.one("header")
    assert header.one("h1").text() == "flaky <report>"  # escaped in the file, text here
    assert "&lt;report&gt;" in text and "FAILED" in header.text()
    check_summary_table(doc, summary)
    check_histogram(doc, "x", ok_values(rows, "x"))
    check_ecdf(doc, "x")

    shown = doc.one("table", id="failures").find_all("tr", cls="failure")
    assert [int(r.attrs["data-sequence"]) for r in shown] == [r["sequence"] for r in failed[:100]]
    for row in shown:
        assert row.one("td", cls="error-type").text() == "ValueError"
        assert row.one("td", cls="error-message").text() == "unlucky draw"
    more = doc.one("p", cls="more").text()
    assert f"and {len(failed) - 100:,} more failed sequences" in more
    by_type = doc.one("table", id="error-types").one("tr", data_error_type="ValueError")
    assert f"{len(failed):,}" in by_type.text()
    assert "Traceback" in by_type.one("pre").text()  # the first failure's traceback
    check_self_contained(doc, text)


@slow
def test_pdf_report_holds_the_run_id_outputs_and_summary(runs: Runs) -> None:
    from pypdf import PdfReader

    path, elapsed = report(runs, runs.pi, "pi.pdf", "--pdf")
    assert elapsed < 120
    assert path.read_bytes()[:5] == b"%PDF-"
    pdf = PdfReader(str(path))
    assert len(pdf.pages) >= 3  # sections start on new pages
    text = "\n".join(page.extract_text() for page in pdf.pages)
    for expected in (runs.pi, "pi", "inside", "Summary", "Distributions", "Run spec"):
        assert expected in text, expected
    assert not list(runs.folder.glob(".pi.pdf*"))  # no temporary file left beside it


@slow
def test_bad_input_exits_2_with_one_message(runs: Runs) -> None:
    folder = runs.folder

    def fails(*args: str, env: dict[str, str] | None = None) -> str:
        done = ancho("report", *args, cwd=folder, env=env)
        assert done.code == 2, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        return done.stderr

    assert "no run 'nosuchrun'" in fails("nosuchrun", "-o", "x.html")
    assert "does not exist" in fails(runs.pi, "-o", "missing/r.html")
    (folder / "plain.txt").write_text("a file, not a folder\n")
    assert "is not a folder" in fails(runs.pi, "-o", "plain.txt/r.html")
    assert "is a folder" in fails(runs.pi, "-o", str(folder))
    assert "does not exist" in fails(runs.pi, "-o", "missing/r.pdf", "--pdf")
    assert "-o" in fails(runs.pi)  # no output named
    no_browser = fails(runs.pi, "-o", "r.pdf", "--pdf", env={"PATH": str(folder / "empty")})
    assert "Chromium" in no_browser and "make chromium" in no_browser
    assert not (folder / "x.html").exists() and not (folder / "r.pdf").exists()
    assert not (folder / "missing").exists()


# ---------------------------------------------------------------------------------------
# build_report directly: sampling, booleans, non-finite values, escaping, memory
# ---------------------------------------------------------------------------------------


def _run(n: int, outputs: list[str], name: str = "unit") -> RunRecord:
    spec = {"model": {"source": "m", "entrypoint": "model:simulate"}, "sequences": n}
    return RunRecord(id="r1", name=name, spec=spec, seed=7, sequences=n, state="FINISHED",
                     outputs=outputs, ok=n, created_at=1.7e9, started_at=1.7e9,
                     finished_at=1.7e9 + 5)  # fmt: skip


def _rows(n: int) -> Iterator[dict[str, Any]]:
    """JSON-lines shaped results: float, int, bool, and a float output with NaNs."""
    rng = np.random.default_rng(3)
    for i in range(n):
        x = float(rng.normal())
        z = "nan" if i % 10 == 0 else x
        outputs = {"x": x, "k": int(rng.integers(0, 500)), "b": bool(x > 1), "z": z}
        yield {"sequence": i, "status": "ok", "outputs": outputs}


def test_histogram_is_exact_with_the_summary_range_and_sampled_without() -> None:
    n, cap = 5000, 1000
    values = np.array([r["outputs"]["x"] for r in _rows(n)])
    run = _run(n, ["x", "k", "b", "z"])
    summary = {"outputs": {"x": {"min": float(values.min()), "max": float(values.max())}}}

    exact = parse(build_report(run, summary, _rows(n), sample_cap=cap))
    check_histogram(exact, "x", values)  # every value counted, despite the small sample
    assert int(exact.one("svg", cls="ecdf", data_output="x").attrs["data-n"]) == cap
    caption = exact.one("figure", id="output-x").one("figcaption").text()
    assert "Every value is counted in the histogram" in caption and f"{cap:,} of the" in caption

    sampled = parse(build_report(run, None, _rows(n), sample_cap=cap))
    svg = sampled.one("svg", cls="histogram", data_output="x")
    assert svg.attrs["data-exact"] == "false" and int(svg.attrs["data-total"]) == cap
    caption = sampled.one("figure", id="output-x").one("figcaption").text()
    assert "histogram and the ECDF are drawn from a uniform random sample" in caption
    check_ecdf(sampled, "x")
    assert "No summary is stored" in sampled.one("section", id="summary").text()


def test_booleans_are_two_bars_and_non_finite_values_are_counted_apart() -> None:
    n = 3000
    rows = list(_rows(n))
    doc = parse(build_report(_run(n, ["x", "k", "b", "z"]), None, rows))
    bars = doc.one("svg", cls="bool", data_output="b").find_all("rect", cls="bar")
    trues = sum(r["outputs"]["b"] for r in rows)
    assert [(b.attrs["data-value"], int(b.attrs["data-count"])) for b in bars] == [
        ("false", n - trues),
        ("true", trues),
    ]
    z = np.array([r["outputs"]["z"] for r in rows if r["outputs"]["z"] != "nan"])
    check_histogram(doc, "z", z)
    caption = doc.one("figure", id="output-z").one("figcaption").text()
    assert f"Not charted: {n // 10:,} non-finite values (nan {n // 10:,})" in caption
    check_histogram(doc, "k", np.array([r["outputs"]["k"] for r in rows], dtype=float))


def test_text_is_escaped_and_failures_are_capped() -> None:
    evil = "<script>alert(1)</script>"
    results = [
        SequenceResult(i, "failed", {}, {"type": f"E{i % 3}", "message": evil, "traceback": evil})
        for i in range(150)
    ] + [SequenceResult(150, "ok", {"v": 1.5})]
    run = _run(151, ["v"], name=evil)
    run.spec["parameters"] = {"note": evil}
    text = build_report(run, {"outputs": {}, "custom": {"c": evil}}, results)
    doc = parse(text)
    assert not doc.find_all("script") and "<script>" not in text
    assert doc.one("h1").text() == evil
    assert len(doc.one("table", id="failures").find_all("tr", cls="failure")) == 100
    assert "and 50 more failed sequences" in doc.one("p", cls="more").text()
    assert evil in doc.one("pre", id="spec-json").text()
    check_self_contained(doc, text)


@slow
def test_a_million_sequences_in_bounded_memory() -> None:
    """1,000,000 results streamed through build_report in a fresh process: exact
    histogram counts, a 200,000-value sample, and a peak RSS far below the data's size."""
    script = """
import sys, time
import numpy as np
from ancho.report import build_report
from ancho.results import SequenceResult
from ancho.store import RunRecord
n = 1_000_000
def rows():
    rng = np.random.default_rng(0)
    for start in range(0, n, 10_000):
        xs = rng.normal(size=10_000)
        for i, x in enumerate(xs.tolist()):
            yield SequenceResult(start + i, "ok", {"x": x, "k": int(x * 100), "b": x > 0})
run = RunRecord(id="big", name="big", spec={}, seed=1, sequences=n, outputs=["x", "k", "b"], ok=n)
summary = {"outputs": {"x": {"min": -10.0, "max": 10.0}}}
t = time.monotonic()
text = build_report(run, summary, rows())
# VmHWM is this process's own peak; ru_maxrss would carry over the peak of the
# process that spawned it (pytest's, which grows over a long suite).
peak_kb = open("/proc/self/status").read().split("VmHWM:")[1].split()[0]
print(time.monotonic() - t, peak_kb, len(text))
sys.stdout.write("\\n" + text)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=600, check=True)  # fmt: skip
    stats, text = proc.stdout.split("\n", 1)
    seconds, rss_kb, size = (float(v) for v in stats.split())
    assert rss_kb < 200 * 1024, rss_kb  # as objects the results alone would take over 400 MB
    assert size < 2_000_000
    doc = parse(text)
    # x has its range in the summary: every value binned; k has not: its sample is.
    for name, exact, total in (("x", "true", 1_000_000), ("k", "false", 200_000)):
        svg = doc.one("svg", cls="histogram", data_output=name)
        counts = sum(int(b.attrs["data-count"]) for b in svg.find_all("rect", cls="bar"))
        assert (svg.attrs["data-exact"], counts) == (exact, total)
        assert int(doc.one("svg", cls="ecdf", data_output=name).attrs["data-n"]) == 200_000
    bools = doc.one("svg", cls="bool", data_output="b").find_all("rect", cls="bar")
    assert sum(int(b.attrs["data-count"]) for b in bools) == 1_000_000
    assert math.isfinite(seconds) and seconds < 300
