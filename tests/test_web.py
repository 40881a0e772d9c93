"""The web page at ``/`` and its histogram route.

- ``histogram()`` against numpy, and the route's answers through Flask's test client;
- the page in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
  ``make chromium``) driven by Selenium against a real ``ancho server`` subprocess: sign
  in, watch a submitted run finish, open it, and compare its summary table and histogram
  with the API's.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from e2e import EXAMPLES, MODELS, LiveServer, ancho, run_id_of
from flask.testing import FlaskClient
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from ancho import histogram
from ancho.histogram import stream_histogram
from ancho.results import SequenceResult
from ancho.server.app import create_app
from ancho.server.context import ServerContext
from ancho.server.stores import RoutingStore
from ancho.store import RunRecord, open_store
from ancho.users import add_user

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")


# --------------------------------------------------------------------------- histogram()


def _results(values: Iterable[Any], failed: Iterable[int] = ()) -> list[SequenceResult]:
    out = [SequenceResult(i, "ok", {} if v is None else {"x": v}) for i, v in enumerate(values)]
    for i in failed:
        out[i] = SequenceResult(i, "failed", {}, {"type": "E", "message": "", "traceback": ""})
    return out


class _Passes:
    """``results(stop)`` over a fixed list, counting the passes made."""

    def __init__(self, rows: list[SequenceResult]) -> None:
        self.rows, self.passes = rows, 0

    def __call__(self, stop: int | None) -> Iterator[SequenceResult]:
        self.passes += 1
        return (r for r in self.rows if stop is None or r.sequence < stop)


def test_histogram_matches_numpy_in_chunks_and_skips_what_is_not_a_finite_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(histogram, "CHUNK", 7)  # many chunks
    rng = np.random.default_rng(5)
    values: list[Any] = list(rng.normal(10.0, 3.0, 500))
    values[3], values[9], values[17], values[20] = math.nan, math.inf, None, -math.inf
    rows = _results(values, failed=[30, 31])
    finite = np.array([v for i, v in enumerate(values)
                       if i not in (30, 31) and v is not None and math.isfinite(v)])  # fmt: skip
    expected, edges = np.histogram(finite, bins=25)
    passes = _Passes(rows)
    doc = stream_histogram(passes, "x", 25)
    assert passes.passes == 2
    assert doc["counts"] == expected.tolist() and doc["edges"] == edges.tolist()
    assert doc["count"] == len(finite) == 494 and doc["skipped"] == 4 and doc["bins"] == 25
    assert set(doc) == {"output", "bins", "edges", "counts", "count", "skipped"}
    # the summary's range: one pass, the same answer
    one = _Passes(rows)
    assert stream_histogram(one, "x", 25, (float(finite.min()), float(finite.max()))) == doc
    assert one.passes == 1
    # a stale range that misses values: thrown away, two more passes, the same answer
    stale = _Passes(rows)
    assert stream_histogram(stale, "x", 25, (9.0, 11.0)) == doc and stale.passes == 3


def test_histogram_edge_cases() -> None:
    # bools and ints: whole-number bins, centred on the values
    bools = stream_histogram(_Passes(_results([True, False, True])), "x", 2)
    assert bools["counts"] == [1, 2] and bools["edges"] == [-0.5, 0.5, 1.5]
    ints = stream_histogram(_Passes(_results([0, 3, 3, 9, 10])), "x", 4)
    assert ints["edges"] == [-0.5, 2.5, 5.5, 8.5, 11.5] and ints["counts"] == [1, 2, 0, 2]
    # a summary range with whole ends, then a non-integer: the float bins after all
    mixed = _Passes(_results([0, 2.5, 10]))
    assert stream_histogram(mixed, "x", 4, (0.0, 10.0))["edges"] == [0.0, 2.5, 5.0, 7.5, 10.0]
    same = stream_histogram(_Passes(_results([4.0] * 5)), "x", 4)
    assert same["edges"] == [3.5, 4.5] and same["counts"] == [5]
    empty = stream_histogram(_Passes(_results([None, math.nan])), "x", 10)
    assert empty == {"output": "x", "bins": 0, "edges": [], "counts": [], "count": 0,
                     "skipped": 2}  # fmt: skip
    huge = stream_histogram(_Passes(_results([-1e308, 0.0, 1e308])), "x", 4)
    assert huge["counts"] == [1, 0, 1, 1] and huge["edges"][0] == -1e308
    assert huge["edges"][-1] == 1e308 and all(math.isfinite(e) for e in huge["edges"])
    tiny = stream_histogram(_Passes(_results([1.0, math.nextafter(1.0, 2.0)])), "x", 200)
    assert 1 <= tiny["bins"] < 200 and sum(tiny["counts"]) == 2
    assert len(tiny["edges"]) == tiny["bins"] + 1


# --------------------------------------------------------------------------- the route


@dataclass
class _App:
    client: FlaskClient
    tokens: dict[str, str]

    def get(self, path: str, user: str | None = "alice") -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.tokens[user]}"} if user else {}
        response = self.client.get(path, headers=headers)
        return response.status_code, response.get_json(silent=True)


@pytest.fixture
def app(tmp_path: Path) -> _App:
    admin = open_store(f"sqlite:///{tmp_path / 's.db'}")
    tokens = {name: str(add_user(admin, name)["token"]) for name in ("alice", "bob")}
    store = RoutingStore(admin)
    store.create_run(RunRecord(id="r1", name="demo", spec={}, seed=1, sequences=100,
                               owner="alice", state="FINISHED"))  # fmt: skip
    store.register_outputs("r1", ["x", "flag"])
    store.write_results("r1", [SequenceResult(i, "ok", {"x": i / 10, "flag": i % 3 == 0})
                               for i in range(100)])  # fmt: skip
    store.put_summary("r1", {"outputs": {"x": {"count": 100, "min": 0.0, "max": 9.9}}})
    store.create_run(RunRecord(id="r2", name="new", spec={}, seed=1, sequences=5,
                               owner="alice"))  # fmt: skip
    client = create_app(ServerContext(store=store)).test_client()
    return _App(client, tokens)


def test_histogram_route(app: _App) -> None:
    status, doc = app.get("/api/v1/runs/r1/histogram?output=x&bins=10")
    assert status == 200 and doc["counts"] == [10] * 10 and doc["count"] == 100
    assert doc["edges"] == np.histogram_bin_edges([0.0, 9.9], 10).tolist()
    status, doc = app.get("/api/v1/runs/r1/histogram?output=flag")  # no summary: two passes
    assert status == 200 and doc["bins"] == 2 and doc["count"] == 100  # bools: 2 bins
    assert doc["counts"] == [66, 34] and doc["edges"] == [-0.5, 0.5, 1.5]


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        ("output=x&bins=0", {"bins": "must be an integer from 1 to 200"}),
        ("output=x&bins=201", {"bins": "must be an integer from 1 to 200"}),
        ("output=x&bins=ten", {"bins": "must be an integer from 1 to 200"}),
        ("bins=5", {"output": "required: an output of the run (x, flag)"}),
        ("output=y&bins=-1", {"output": "no output 'y' (outputs: x, flag)",
                              "bins": "must be an integer from 1 to 200"}),
    ],
)  # fmt: skip
def test_histogram_route_refuses_a_bad_query(app: _App, query: str, errors: dict[str, str]) -> None:
    status, doc = app.get(f"/api/v1/runs/r1/histogram?{query}")
    assert status == 400 and doc["error"] == "invalid query"
    assert {d["path"]: d["message"] for d in doc["details"]} == errors


def test_histogram_route_needs_the_owner_and_recorded_outputs(app: _App) -> None:
    status, doc = app.get("/api/v1/runs/r1/histogram?output=x", user=None)
    assert status == 401 and "bearer token" in doc["error"]
    assert app.get("/api/v1/runs/r1/histogram?output=x", user="bob")[0] == 404
    assert app.get("/api/v1/runs/nope/histogram?output=x")[0] == 404
    status, doc = app.get("/api/v1/runs/r2/histogram?output=x")
    assert status == 400 and "no outputs yet" in doc["details"][0]["message"]


def test_the_page_and_its_files_need_no_token(app: _App) -> None:
    page = app.client.get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert '<script src="/web/static/ancho.js" defer>' in html
    assert "http" not in html.replace("http-equiv", "")  # nothing from elsewhere
    for name, mime in (("ancho.js", "text/javascript"), ("ancho.css", "text/css")):
        response = app.client.get(f"/web/static/{name}")
        assert response.status_code == 200 and response.mimetype == mime
        response.close()


# --------------------------------------------------------------------------- in Chromium


@dataclass
class _Site:
    server: LiveServer
    token: str
    root: Path

    @property
    def url(self) -> str:
        return self.server.url

    def env(self) -> dict[str, str]:
        return {"ANCHO_TOKEN": self.token, "XDG_CONFIG_HOME": str(self.root / "no-config")}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Site]:
    """A real ``ancho server`` with one user, stopped with SIGTERM at the end."""
    root = tmp_path_factory.mktemp("web")
    store = f"sqlite:///{root / 's.db'}"
    user = ancho("user", "add", "alice", "--store", store, cwd=root)
    assert user.code == 0, user.stderr
    server = LiveServer(store, root).start()
    try:
        yield _Site(server, str(user.json()["token"]), root)
    finally:
        assert server.stop() == 0


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    """Headless Chromium through Debian's chromedriver (nothing downloaded)."""
    for path in (CHROMIUM, CHROMEDRIVER):
        if not path.exists():
            pytest.fail(f"{path} is missing: run `make chromium`", pytrace=False)
    root = tmp_path_factory.mktemp("chromium")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SE_OFFLINE", "true")  # Selenium Manager must never download
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1280,1200", f"--user-data-dir={root / 'profile'}"):  # fmt: skip
            options.add_argument(arg)
        service = Service(str(CHROMEDRIVER), log_output=str(root / "chromedriver.log"))
        driver = webdriver.Chrome(options=options, service=service)
        try:
            yield driver
        finally:
            driver.quit()


def _wait(driver: WebDriver, timeout: float = 20) -> WebDriverWait[WebDriver]:
    return WebDriverWait(driver, timeout, poll_frequency=0.2,
                         ignored_exceptions=[StaleElementReferenceException])  # fmt: skip


def _shown(driver: WebDriver, css: str) -> bool:
    found = driver.find_elements(By.CSS_SELECTOR, css)
    return bool(found) and found[0].is_displayed()


def _sign_in(driver: WebDriver, url: str, token: str) -> None:
    driver.get(url + "/")
    driver.execute_script("localStorage.clear()")
    driver.get(url + "/#/")
    _wait(driver).until(lambda d: _shown(d, "#login-view"))
    field = driver.find_element(By.ID, "token-input")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.ID, "login-button").click()


def _text(driver: WebDriver, script: str) -> Any:
    return driver.execute_script(script)


@pytest.mark.slow
def test_the_convergence_chart_grows_while_the_run_goes(site: _Site, browser: WebDriver) -> None:
    sub = ancho("submit", str(MODELS / "slow"), "--server", site.url, "--sequences", "300",
                "-p", "sleep_s=0.03", cwd=site.root, env=site.env())  # fmt: skip
    assert sub.code == 0, sub.stderr
    rid = run_id_of(sub)
    _sign_in(browser, site.url, site.token)
    _wait(browser).until(lambda d: _shown(d, "#runs-view"))
    browser.get(f"{site.url}/#/runs/{rid}")
    chart = 'svg.convergence[data-output="u"]'
    attr = f"const c = document.querySelector('{chart}'); return c && c.getAttribute('{{}}')"
    running = "return document.getElementById('run-state').textContent"
    # While the run goes: a chart over the sequences in so far.
    _wait(browser, 60).until(lambda d: _text(d, attr.format("data-points")) is not None)
    assert _text(browser, running) == "RUNNING"
    first_k = int(_text(browser, attr.format("data-last-k")))
    assert 0 < first_k < 300
    # It grows by itself, and ends on the whole run, whose mean is the summary's.
    _wait(browser, 90).until(lambda d: _text(d, attr.format("data-last-k")) == "300")
    points = int(_text(browser, attr.format("data-points")))
    assert points >= 3
    _, summary, _ = site.server.request("GET", f"/api/v1/runs/{rid}/summary", site.token)
    assert float(_text(browser, attr.format("data-last-mean"))) == summary["outputs"]["u"]["mean"]
    _, series, _ = site.server.request("GET", f"/api/v1/runs/{rid}/convergence", site.token)
    ks = [p[0] for p in series["outputs"]["u"]]
    assert ks == sorted(set(ks)) and len(ks) == points and ks[-1] == 300
    for _, mean, lo, hi in series["outputs"]["u"][1:]:
        assert lo < mean < hi and hi - lo < 1.0  # a band around a uniform's mean
    band = browser.find_element(By.CSS_SELECTOR, f"{chart} polygon.band")
    assert band.size["height"] > 20 and band.size["width"] > 200  # drawn, not just there


@pytest.mark.slow
def test_a_wrong_token_shows_an_error_not_a_list(site: _Site, browser: WebDriver) -> None:
    _sign_in(browser, site.url, "not-a-token")
    _wait(browser).until(lambda d: _shown(d, "#login-error"))
    message = browser.find_element(By.ID, "login-error").text
    assert "refused" in message and "invalid or revoked token" in message
    assert not _shown(browser, "#runs-view") and not _shown(browser, "#runs-table")
    assert browser.execute_script("return localStorage.getItem('ancho.token')") is None


@pytest.mark.slow
def test_the_page_follows_a_run_and_shows_its_summary_and_histograms(
    site: _Site, browser: WebDriver
) -> None:
    sub = ancho("submit", str(EXAMPLES / "pi"), "--server", site.url, "--sequences", "3000",
                cwd=site.root, env=site.env())  # fmt: skip
    assert sub.code == 0, sub.stderr
    rid = run_id_of(sub)
    _sign_in(browser, site.url, site.token)
    row = f'#runs-table tr.run-row[data-run-id="{rid}"]'
    _wait(browser).until(lambda d: _shown(d, row))
    assert browser.execute_script("return localStorage.getItem('ancho.token')") == site.token

    # the list refreshes by itself until the run is done
    state = f"const r = document.querySelector('{row} .state'); return r && r.textContent"
    _wait(browser, 90).until(lambda d: _text(d, state) == "FINISHED")
    badge = browser.find_element(By.CSS_SELECTOR, f"{row} .state")
    assert badge.value_of_css_property("background-color") == "rgba(47, 143, 70, 1)"  # green
    progress = browser.find_element(By.CSS_SELECTOR, f"{row} .progress")
    assert progress.get_attribute("data-ok") == "3000" and progress.text == "3,000 / 3,000"

    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    _wait(browser).until(lambda d: _shown(d, "#run-view") and not _shown(d, "#runs-view"))
    assert browser.current_url.endswith(f"#/runs/{rid}")
    assert browser.find_element(By.ID, "run-state").text == "FINISHED"
    status, run, _ = site.server.request("GET", f"/api/v1/runs/{rid}", site.token)
    assert status == 200
    fact = 'dd[data-fact="{}"]'.format
    assert browser.find_element(By.CSS_SELECTOR, fact("seed")).text == str(run["seed"])
    assert browser.find_element(By.CSS_SELECTOR, fact("ok")).text == "3,000"

    # the summary table shows the API's mean, as `ancho summary --format table` writes it
    mean_cell = '#summary-table tr[data-output="pi"] td[data-stat="mean"]'
    _wait(browser).until(lambda d: _shown(d, mean_cell))
    status, summary, _ = site.server.request("GET", f"/api/v1/runs/{rid}/summary", site.token)
    assert status == 200
    mean = summary["outputs"]["pi"]["mean"]
    cell = browser.find_element(By.CSS_SELECTOR, mean_cell)
    assert cell.text == f"{mean:.6g}" and float(cell.get_attribute("data-value") or "") == mean
    count_cell = '#summary-table tr[data-output="pi"] td[data-stat="count"]'
    assert browser.find_element(By.CSS_SELECTOR, count_cell).text == "3,000"

    # the histogram: one bar per bin, their counts those of the API, summing to 3000
    chart = 'svg.histogram[data-output="pi"]'
    _wait(browser).until(lambda d: _shown(d, chart))
    counts = _bars(browser, chart)
    _, api, _ = site.server.request("GET", f"/api/v1/runs/{rid}/histogram?output=pi&bins=40",
                                    site.token)  # fmt: skip
    assert sum(counts) == 3000 and counts == api["counts"] and len(counts) == 40
    assert browser.find_element(By.CSS_SELECTOR, chart).get_attribute("data-count") == "3000"
    tallest = max(browser.find_elements(By.CSS_SELECTOR, f"{chart} rect.bar"),
                  key=lambda r: float(r.get_attribute("height") or 0))  # fmt: skip
    assert tallest.size["height"] > 50 and tallest.size["width"] > 5  # drawn, not just there
    assert _shown(browser, 'svg.histogram[data-output="inside"]')

    # fewer bins on request, still every sequence
    Select(browser.find_element(By.ID, "bins")).select_by_visible_text("10")
    _wait(browser).until(lambda d: len(_bars(d, chart)) == 10)
    assert sum(_bars(browser, chart)) == 3000

    logs = browser.find_element(By.ID, "logs").get_attribute("textContent") or ""
    assert "run finished" in logs

    browser.find_element(By.ID, "logout").click()
    _wait(browser).until(lambda d: _shown(d, "#login-view") and not _shown(d, "#run-view"))
    assert browser.execute_script("return localStorage.getItem('ancho.token')") is None


def _bars(driver: WebDriver, chart: str) -> list[int]:
    script = (f"return Array.from(document.querySelectorAll('{chart} rect.bar'),"
              " r => Number(r.dataset.count))")  # fmt: skip
    return [int(c) for c in driver.execute_script(script)]


@pytest.mark.slow
def test_the_page_lists_experiments_and_shows_their_points(site: _Site, browser: WebDriver) -> None:
    spec = {"name": "coins <i>", "sequences": 200, "seed": 3, "parameters": {"p": 0.5},
            "model": {"source": str(MODELS / "bernoulli"), "entrypoint": "model:simulate"},
            "sweep": {"grid": {"p": [0.1, 0.9]}}}  # fmt: skip
    (site.root / "sweep.json").write_text(json.dumps(spec))
    sub = ancho("submit", "sweep.json", "--server", site.url, cwd=site.root, env=site.env())
    assert sub.code == 0, sub.stderr
    exp = sub.stdout.split()[1]  # "experiment <id> (2 points)"
    _sign_in(browser, site.url, site.token)
    row = f'#experiments-table tr.experiment-row[data-experiment-id="{exp}"]'
    _wait(browser).until(lambda d: _shown(d, row))
    cells = browser.find_elements(By.CSS_SELECTOR, f"{row} td")
    assert [c.text for c in cells[1:3]] == ["coins <i>", "2"]  # the name as text, not HTML
    browser.find_element(By.CSS_SELECTOR, f"{row} a").click()
    _wait(browser).until(lambda d: _shown(d, "#experiment-view"))
    # The points' table refreshes by itself until every run has ended.
    state = "return document.getElementById('experiment-state').textContent"
    _wait(browser, 90).until(lambda d: _text(d, state) == "FINISHED")
    _, doc, _ = site.server.request("GET", f"/api/v1/experiments/{exp}", site.token)
    rows = browser.find_elements(By.CSS_SELECTOR, "#points-table tr.point-row")
    assert [r.get_attribute("data-run") for r in rows] == [p["run"] for p in doc["points"]]
    heads = [
        h.get_attribute("textContent")
        for h in browser.find_elements(By.CSS_SELECTOR, "#points-table th")
    ]
    assert heads == ["point", "p", "hit", "x", "run", "state"]
    for r, point in zip(rows, doc["points"], strict=True):
        assert r.find_element(By.CSS_SELECTOR, 'td[data-parameter="p"]').text == str(
            point["parameters"]["p"]
        )
        hit = point["summary"]["outputs"]["hit"]
        cell = r.find_element(By.CSS_SELECTOR, 'td[data-output="hit"]')
        assert float(cell.get_attribute("data-mean")) == hit["mean"]
        assert cell.text.startswith(f"{hit['mean']:.6g} ± ")
        assert r.find_element(By.CSS_SELECTOR, ".state").text == "FINISHED"
    # A point's run link opens that run.
    rows[1].find_element(By.CSS_SELECTOR, "a").click()
    second = doc["points"][1]["run"]
    _wait(browser).until(lambda d: _text(d, "return location.hash") == f"#/runs/{second}")
    _wait(browser).until(lambda d: _shown(d, "#run-view"))
    # Another user's experiment, or none: said, not shown.
    browser.get(f"{site.url}/#/experiments/nope")
    _wait(browser).until(lambda d: _shown(d, "#banner"))
    assert "not one of your experiments" in browser.find_element(By.ID, "banner").text
