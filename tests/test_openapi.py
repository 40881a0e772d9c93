"""The OpenAPI document: valid OpenAPI 3.1, one run-spec definition, every route in it;
and schemathesis against a live ``ancho server`` with checks that every answer is
documented: no 5xx, only declared statuses and content types, bodies matching schemas.

The live server holds one user, an uploaded model (a tiny one that ignores its
parameters) and a finished run; hooks replace generated run ids by that run's id in many
of the cases (and histogram queries by its outputs), so the operations on a run answer
200 as well as 404 and 400.
Generated specs that are valid are made cheap before they are sent (the uploaded model,
at most 3 sequences, one executor, one attempt, no Docker), so ``POST /api/v1/runs``
is fuzzed like every other operation without launching big runs. ``DELETE`` goes to
a throwaway run, not to the finished one the other operations read.
"""

from __future__ import annotations

import copy
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import jsonschema
import pytest
import schemathesis
from e2e import LiveServer, ancho
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate as validate_openapi
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ancho.client import pack
from ancho.server.app import create_app
from ancho.server.context import ServerContext
from ancho.server.openapi import document
from ancho.server.stores import RoutingStore
from ancho.spec import schema as run_spec_schema
from ancho.store.sqlite import SQLiteStore

#: Routes the document must describe (the web page and its static files are not API).
API_PREFIXES = ("/api/v1/", "/healthz", "/metrics")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
UPLOAD_LIMIT_MB = 1
TINY_MODEL = """
def simulate(params, rng):
    return {"x": float(rng.random()), "k": int(rng.integers(0, 3))}
"""


# --- the document, in process -----------------------------------------------------------


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    validate_openapi(doc)
    json.dumps(doc, allow_nan=False)  # plain JSON


def _as_components(node: Any) -> Any:
    """The package schema as the document holds it: ``$defs`` → ``components/schemas``."""
    text = json.dumps(node).replace('"#/$defs/', '"#/components/schemas/')
    return json.loads(text)


def test_the_run_spec_is_the_package_schema() -> None:
    package = copy.deepcopy(run_spec_schema())  # the package's is cached: not changed here
    schemas = document()["components"]["schemas"]
    defs = package.pop("$defs")
    for key in ("$schema", "$id"):
        package.pop(key)
    assert schemas["RunSpec"] == _as_components(package)
    for name, definition in defs.items():
        assert schemas[name] == _as_components(definition), name
    body = document()["paths"]["/api/v1/runs"]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/RunSpec"}
    example = body["content"]["application/json"]["example"]
    jsonschema.Draft202012Validator(run_spec_schema()).validate(example)


def _template(path: str) -> str:
    """A route with its parameters unnamed: ``/runs/<run_id>`` and ``/runs/{id}`` alike."""
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def test_every_api_route_is_documented_and_nothing_else(tmp_path: Path) -> None:
    app = create_app(ServerContext(store=RoutingStore(SQLiteStore(tmp_path / "ancho.db"))))
    routes = {
        (_template(rule.rule), method.lower())
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith(API_PREFIXES)
        for method in rule.methods or ()
        if method not in ("HEAD", "OPTIONS")
    }
    documented = {
        (_template(path), method)
        for path, item in document()["paths"].items()
        for method in item
        if method != "parameters"
    }
    assert routes, "no API routes found"
    assert routes - documented == set(), "routes missing from the document"
    assert documented - routes == set(), "documented operations the app does not have"


def test_every_error_status_is_the_error_shape() -> None:
    responses = document()["components"]["responses"]
    assert responses["Error"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"
    }
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response == {"$ref": "#/components/responses/Error"}, (path, status)
            if operation.get("security") != []:
                assert "401" in operation["responses"], (path, method)


# --- schemathesis against a live server -------------------------------------------------


class Site:
    """A live server, its user's token, an uploaded model and two runs."""

    def __init__(self, server: LiveServer, token: str, model: bytes, source: str) -> None:
        self.server, self.token, self.model, self.source = server, token, model, source
        self.finished = ""  # a run every GET may read
        self.throwaway = ""  # the run DELETE may kill
        self.statuses: Counter[tuple[str, int]] = Counter()

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any, str]:  # fmt: skip
        """One API call with the token."""
        return self.server.request(method, path, self.token, body, headers)

    def submit(self, sequences: int) -> str:
        """A run of the uploaded model; its id."""
        spec = {"name": "openapi", "model": {"source": self.source, "entrypoint": "model:simulate"},
                "sequences": sequences, "seed": 7}  # fmt: skip
        status, doc, text = self.call("POST", "/api/v1/runs", spec)
        assert status == 201, text
        return str(doc["id"])

    def wait(self, run_id: str, timeout: float = 150) -> dict[str, Any]:
        """Poll the run until it ends."""
        deadline = time.monotonic() + timeout
        while True:
            status, doc, text = self.call("GET", f"/api/v1/runs/{run_id}")
            assert status == 200, text
            if doc["state"] in ("FINISHED", "FAILED", "KILLED"):
                return dict(doc)
            assert time.monotonic() < deadline, doc
            time.sleep(0.3)

    def cheap(self, body: Any) -> Any:
        """A valid generated spec made cheap to run; anything else as it is."""
        if not isinstance(body, dict):
            return body
        if not jsonschema.Draft202012Validator(run_spec_schema()).is_valid(body):
            return body
        body = copy.deepcopy(body)
        body["model"] = {"source": self.source, "entrypoint": "model:simulate"}
        body["sequences"] = min(body["sequences"], 3)
        resources = body.get("resources", {})
        resources["max_executors"] = 1
        resources["cpus"] = min(resources.get("cpus", 0.5), 0.5)
        resources["mem_mb"] = min(resources.get("mem_mb", 128), 256)
        body["resources"] = resources
        body["max_attempts"] = 1
        body.pop("executor", None)  # Docker, or a network setting
        return body


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("openapi")
    store = f"sqlite:///{root / 'ancho.db'}"
    user = ancho("user", "add", "alice", "--store", store, cwd=root)
    assert user.code == 0, user.stderr
    model = root / "tiny"
    model.mkdir()
    (model / "model.py").write_text(TINY_MODEL)
    server = LiveServer(store, root, {"ANCHO_MAX_UPLOAD_MB": str(UPLOAD_LIMIT_MB)}).start()
    try:
        token, tarball = user.json()["token"], pack(model)
        status, doc, text = server.request("POST", "/api/v1/models", token, tarball,
                                           {"Content-Type": "application/gzip"})  # fmt: skip
        assert status == 201, text
        site = Site(server, token, tarball, doc["source"])
        site.finished = site.submit(20)
        site.throwaway = site.submit(3)
        done = site.wait(site.finished)
        assert done["state"] == "FINISHED" and done["counts"]["ok"] == 20, done
        LIVE.append(site)
        yield site
    finally:
        LIVE.clear()
        assert server.stop() == 0


#: The document as schemathesis sees it (built in process, so that pytest can collect one
#: test per operation; ``test_the_served_document_is_this_one`` compares the live one).
schema = schemathesis.openapi.from_dict(
    document(), config=schemathesis.Config.from_dict({"request-timeout": 30})
)
#: Model uploads are sent as they are, whatever their declared gzip type.
schemathesis.serializer.alias(
    ["application/gzip", "application/x-gzip"], "application/octet-stream"
)
#: The live site the hooks aim at (set by the ``site`` fixture).
LIVE: list[Site] = []


@schema.hook
def flatmap_path_parameters(ctx: schemathesis.HookContext, params: Any) -> Any:
    """Many generated run ids become a real run's (the coverage phase keeps its own)."""
    if not LIVE or not params or "id" not in params or ctx.operation is None:
        return st.just(params)
    site = LIVE[-1]
    real = site.throwaway if ctx.operation.method.upper() == "DELETE" else site.finished
    return st.sampled_from([{**params, "id": real}, params])


@schema.hook
def flatmap_body(ctx: schemathesis.HookContext, body: Any) -> Any:
    """Uploads of a real model and of one over the server's limit, as well as noise."""
    if not LIVE or ctx.operation is None or ctx.operation.path != "/api/v1/models":
        return st.just(body)
    too_big = b"\x1f\x8b" + bytes(UPLOAD_LIMIT_MB * 2**20)
    return st.sampled_from([LIVE[-1].model, too_big, body])


@schema.hook
def flatmap_query(ctx: schemathesis.HookContext, query: Any) -> Any:
    """Histograms of the real run's outputs as well as of generated names."""
    if ctx.operation is None or not ctx.operation.path.endswith("/histogram"):
        return st.just(query)
    return st.sampled_from([{"output": "x"}, {"output": "k", "bins": 7}, query])


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_the_live_api_answers_as_documented(case: schemathesis.Case[Any], site: Site) -> None:
    if case.method.upper() == "POST" and case.path == "/api/v1/runs":
        case.body = site.cheap(case.body)
    response = case.call_and_validate(
        base_url=site.server.url, headers={"Authorization": f"Bearer {site.token}"}, checks=CHECKS
    )
    site.statuses[(f"{case.method.upper()} {case.path}", response.status_code)] += 1


@pytest.mark.slow
def test_the_served_document_is_this_one(site: Site) -> None:
    status, doc, _ = site.call("GET", "/api/v1/openapi.json")
    assert status == 200 and doc == json.loads(json.dumps(document()))


@pytest.mark.slow
def test_the_generated_cases_reached_real_runs_and_every_answer(site: Site) -> None:
    hits = site.statuses
    assert hits, "run together with test_the_live_api_answers_as_documented (it records them)"
    for operation in ("GET /api/v1/runs/{id}", "GET /api/v1/runs/{id}/summary",
                      "GET /api/v1/runs/{id}/results", "GET /api/v1/runs/{id}/logs",
                      "GET /api/v1/runs/{id}/histogram"):  # fmt: skip
        assert hits[(operation, 200)] and hits[(operation, 404)], (operation, hits)
    assert hits[("DELETE /api/v1/runs/{id}", 202)], hits
    assert hits[("POST /api/v1/runs", 201)] and hits[("POST /api/v1/runs", 400)], hits
    for status in (201, 400, 413, 415):
        assert hits[("POST /api/v1/models", status)], hits
