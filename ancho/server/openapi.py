"""The OpenAPI 3.1 document of the REST API.

The run-spec schema is the package's JSON Schema (one definition): its ``$defs`` become
component schemas and its ``$ref``s are rewritten to point at them.

Every status an operation really answers is declared, each error as the one JSON shape
``{"error", "details": [{"path", "message"}]}`` (``components.schemas.Error``). Besides
those, any route answers a method it does not serve with 405, and a path it does not
know with 404, in the same shape. ``tests/test_openapi.py`` checks the document against
the app's routes and runs schemathesis against a live server.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from ..spec import schema as run_spec_schema

STATES = ["QUEUED", "STAGING", "RUNNING", "SUMMARIZING", "FINISHED", "FAILED", "KILLED"]

#: What ``POST /api/v1/runs`` takes, as shown in the document.
SPEC_EXAMPLE = {
    "name": "pi-demo",
    "model": {"source": "sha256:" + "0" * 64, "entrypoint": "model:simulate"},
    "parameters": {"samples": 10000},
    "sequences": 1000,
    "seed": 42,
}

#: What ``POST /api/v1/experiments`` takes.
SWEEP_EXAMPLE = {**SPEC_EXAMPLE, "parameters": {"samples": 10000, "strike": 100},
                 "sweep": {"grid": {"strike": [90, 100, 110]}}}  # fmt: skip


def _rewrite_refs(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: (v.replace("#/$defs/", "#/components/schemas/") if k == "$ref" else _rewrite_refs(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_rewrite_refs(v) for v in node]
    return node


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _lines(description: str, *media_types: str) -> dict[str, Any]:
    """A streamed text response (JSON lines, CSV): its body is not one JSON document."""
    return {
        "description": description,
        "content": {m: {"schema": {"type": "string"}} for m in media_types},
    }


ERROR = {"$ref": "#/components/responses/Error"}
RUN_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "description": "the run's id (another user's run is answered 404, like a missing one)",
    "schema": {"type": "string"},
}
EXPERIMENT_ID = {
    **RUN_ID,
    "description": "the experiment's id (another user's is answered 404, like a missing one)",
}
#: Answers of every operation on one of the caller's runs.
RUN_ERRORS = {"401": ERROR, "404": ERROR}
GZIP_TYPES = ("application/gzip", "application/x-gzip", "application/octet-stream")


def _query(name: str, schema: dict[str, Any], description: str, required: bool = False) -> Any:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": description,
        "schema": schema,
    }


@functools.cache
def document() -> dict[str, Any]:
    """The whole document (built once)."""
    spec = copy.deepcopy(run_spec_schema())
    defs = spec.pop("$defs", {})
    for key in ("$schema", "$id"):
        spec.pop(key, None)
    schemas: dict[str, Any] = {name: _rewrite_refs(s) for name, s in defs.items()}
    schemas["RunSpec"] = _rewrite_refs(spec)
    schemas.update(_shapes())
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ancho",
            "version": "1",
            "description": (
                "Run Python simulation models at scale. Every error is JSON"
                ' {"error", "details": [{"path", "message"}]}: besides the statuses each'
                " operation declares, a method a path does not serve is answered 405 and"
                " an unknown path 404."
            ),
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "responses": {"Error": _json(_ref("Error"), "an error (never a traceback)")},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/runs": {
                "post": {
                    "operationId": "submitRun",
                    "summary": "Submit a run",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": _ref("RunSpec"),
                                "example": SPEC_EXAMPLE,
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            **_json(_ref("Submitted"), "the run is stored and queued"),
                            "headers": {
                                "Location": {
                                    "description": "the run's URL",
                                    "schema": {"type": "string"},
                                }
                            },
                        },
                        "400": ERROR,
                        "401": ERROR,
                        "413": ERROR,
                    },
                },
                "get": {
                    "operationId": "listRuns",
                    "summary": "The caller's runs, newest first",
                    "responses": {"200": _json(_ref("RunList"), "runs"), "401": ERROR},
                },
            },
            "/api/v1/runs/{id}": {
                "parameters": [RUN_ID],
                "get": {
                    "operationId": "getRun",
                    "summary": "A run's state, counts, timestamps, seed and spec",
                    "responses": {"200": _json(_ref("RunDetail"), "the run"), **RUN_ERRORS},
                },
                "delete": {
                    "operationId": "killRun",
                    "summary": "Kill a run (a finished run stays as it is)",
                    "responses": {"202": _json(_ref("Killed"), "kill requested"), **RUN_ERRORS},
                },
            },
            "/api/v1/runs/{id}/results": {
                "parameters": [RUN_ID],
                "get": {
                    "operationId": "getResults",
                    "summary": "Every sequence, in sequence order (streamed)",
                    "parameters": [
                        _query(
                            "format",
                            {"type": "string", "enum": ["jsonl", "csv"], "default": "jsonl"},
                            "JSON lines, or CSV with columns sequence,status,<outputs…>",
                        )
                    ],
                    "responses": {
                        "200": _lines("one line per sequence", "application/x-ndjson", "text/csv"),
                        "400": ERROR,
                        **RUN_ERRORS,
                    },
                },
            },
            "/api/v1/runs/{id}/summary": {
                "parameters": [RUN_ID],
                "get": {
                    "operationId": "getSummary",
                    "summary": "The summary JSON",
                    "parameters": [
                        _query(
                            "recompute",
                            {"type": "string", "enum": ["true", "false"]},
                            "true: the built-in statistics recomputed by Spark from every"
                            " stored result (an ended run only)",
                        ),
                    ],
                    "responses": {
                        "200": _json(_ref("Summary"), "the summary"),
                        "409": ERROR,
                        "503": ERROR,
                        **RUN_ERRORS,
                    },
                },
            },
            "/api/v1/runs/{id}/logs": {
                "parameters": [RUN_ID],
                "get": {
                    "operationId": "getLogs",
                    "summary": "Scheduler, executor and model log lines (JSON lines)",
                    "parameters": [
                        _query(
                            "follow",
                            {"type": "string", "enum": ["0", "1"]},
                            "1: stream new lines until the run ends",
                        ),
                        _query(
                            "after",
                            {"type": "integer", "minimum": 0},
                            "only lines after the one with this id",
                        ),
                    ],
                    "responses": {
                        "200": _lines(
                            'one {"id", "ts", "source", "level", "message"} per line',
                            "application/x-ndjson",
                        ),
                        "400": ERROR,
                        **RUN_ERRORS,
                    },
                },
            },
            "/api/v1/runs/{id}/histogram": {
                "parameters": [RUN_ID],
                "get": {
                    "operationId": "getHistogram",
                    "summary": "Counts of one output's values in equal-width bins",
                    "parameters": [
                        _query("output", {"type": "string"}, "an output of the run", True),
                        _query(
                            "bins",
                            {"type": "integer", "minimum": 1, "maximum": 200, "default": 40},
                            "how many bins",
                        ),
                    ],
                    "responses": {
                        "200": _json(_ref("Histogram"), "the histogram"),
                        "400": ERROR,
                        **RUN_ERRORS,
                    },
                },
            },
            "/api/v1/runs/{id}/convergence": {
                "parameters": [RUN_ID],
                "get": {
                    "operationId": "getConvergence",
                    "summary": "Each output's mean and 95% band against sequences so far",
                    "responses": {
                        "200": _json(_ref("Convergence"), "the series"),
                        **RUN_ERRORS,
                    },
                },
            },
            "/api/v1/experiments": {
                "post": {
                    "operationId": "submitExperiment",
                    "summary": "Submit a sweep: one run per point, all with the spec's seed",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": _ref("RunSpec"),
                                "example": SWEEP_EXAMPLE,
                            }
                        },
                    },
                    "responses": {
                        "201": {
                            **_json(_ref("ExperimentSubmitted"), "the runs are stored and queued"),
                            "headers": {
                                "Location": {
                                    "description": "the experiment's URL",
                                    "schema": {"type": "string"},
                                }
                            },
                        },
                        "400": ERROR,
                        "401": ERROR,
                        "413": ERROR,
                    },
                },
                "get": {
                    "operationId": "listExperiments",
                    "summary": "The caller's experiments, newest first",
                    "responses": {
                        "200": _json(_ref("ExperimentList"), "experiments"),
                        "401": ERROR,
                    },
                },
            },
            "/api/v1/experiments/{id}": {
                "parameters": [EXPERIMENT_ID],
                "get": {
                    "operationId": "getExperiment",
                    "summary": "An experiment's points, their runs' states and summaries",
                    "responses": {
                        "200": _json(_ref("ExperimentDetail"), "the experiment"),
                        "401": ERROR,
                        "404": ERROR,
                    },
                },
            },
            "/api/v1/models": {
                "post": {
                    "operationId": "uploadModel",
                    "summary": "Upload a model (.tar.gz) for sha256: sources",
                    "requestBody": {
                        "required": True,
                        "content": {
                            m: {"schema": {"type": "string", "format": "binary"}}
                            for m in GZIP_TYPES
                        },
                    },
                    "responses": {
                        "201": _json(_ref("Uploaded"), "stored"),
                        "400": ERROR,
                        "401": ERROR,
                        "413": ERROR,
                        "415": ERROR,
                    },
                },
            },
            "/api/v1/openapi.json": {
                "get": {
                    "operationId": "getOpenapi",
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                },
            },
            "/healthz": {
                "get": {
                    "operationId": "healthz",
                    "summary": "Liveness",
                    "security": [],
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "required": ["status"],
                                "properties": {"status": {"const": "ok"}},
                            },
                            "alive",
                        )
                    },
                },
            },
            "/metrics": {
                "get": {
                    "operationId": "metrics",
                    "summary": "Prometheus metrics (text format, names prefixed ancho_)",
                    "security": [],
                    "responses": {"200": _lines("text format", "text/plain")},
                },
            },
        },
    }


def _shapes() -> dict[str, Any]:
    number = {"type": ["number", "null"]}
    integer = {"type": "integer", "minimum": 0}
    counts = {
        "type": "object",
        "required": ["total", "ok", "failed", "running"],
        "properties": {k: integer for k in ("total", "ok", "failed", "running")},
    }
    run = {
        "type": "object",
        "required": ["id", "name", "state", "seed", "counts"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "state": {"type": "string", "enum": STATES},
            "owner": {"type": "string"},
            "seed": {"type": "integer"},
            "counts": counts,
            "outputs": {"type": ["array", "null"], "items": {"type": "string"}},
            "reason": {"type": ["string", "null"]},
            "created_at": number,
            "started_at": number,
            "finished_at": number,
            "live": {
                "type": "object",
                "description": "while RUNNING: per output count, mean, sem, ci95",
                "additionalProperties": {
                    "type": "object",
                    "required": ["count", "mean", "sem", "ci95"],
                    "properties": {
                        "count": integer,
                        "mean": number,
                        "sem": number,
                        "ci95": {"type": ["array", "null"], "items": {"type": "number"}},
                    },
                },
            },
        },
    }
    return {
        "Error": {
            "type": "object",
            "required": ["error", "details"],
            "properties": {
                "error": {"type": "string"},
                "details": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["path", "message"],
                        "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
                    },
                },
            },
        },
        "Run": run,
        "RunDetail": {
            "allOf": [
                _ref("Run"),
                {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {"spec": _ref("RunSpec")},
                    "description": "the run's spec, every default written out",
                },
            ]
        },
        "RunList": {
            "type": "object",
            "required": ["runs"],
            "properties": {"runs": {"type": "array", "items": _ref("Run")}},
        },
        "Submitted": {
            "type": "object",
            "required": ["id", "state"],
            "properties": {"id": {"type": "string"}, "state": {"type": "string", "enum": STATES}},
        },
        "Killed": {
            "type": "object",
            "required": ["id", "state", "kill_requested"],
            "properties": {
                "id": {"type": "string"},
                "state": {"type": "string", "enum": STATES},
                "kill_requested": {"type": "boolean"},
            },
        },
        "ExperimentSubmitted": {
            "type": "object",
            "required": ["id", "runs"],
            "properties": {
                "id": {"type": "string"},
                "runs": {"type": "array", "items": {"type": "string"}, "description": "by point"},
            },
        },
        "ExperimentList": {
            "type": "object",
            "required": ["experiments"],
            "properties": {
                "experiments": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["id", "name", "owner", "created_at", "points"],
                        "properties": {
                            "id": {"type": "string"},
                            "name": {"type": "string"},
                            "owner": {"type": "string"},
                            "created_at": {"type": "number"},
                            "points": {
                                "type": "array",
                                "items": {
                                    "type": "object",
                                    "required": ["parameters", "run"],
                                    "properties": {
                                        "parameters": {"type": "object"},
                                        "run": {"type": "string"},
                                    },
                                },
                            },
                        },
                    },
                }
            },
        },
        "ExperimentDetail": {
            "type": "object",
            "required": ["experiment", "name", "created_at", "state", "points"],
            "properties": {
                "experiment": {"type": "string"},
                "name": {"type": "string"},
                "created_at": {"type": "number"},
                "state": {"type": "string", "enum": STATES},
                "points": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["parameters", "run", "state", "summary"],
                        "properties": {
                            "parameters": {"type": "object"},
                            "run": {"type": "string"},
                            "state": {"type": "string", "enum": STATES},
                            "summary": {"oneOf": [_ref("Summary"), {"type": "null"}]},
                        },
                    },
                },
            },
        },
        "Uploaded": {
            "type": "object",
            "required": ["source", "bytes"],
            "properties": {
                "source": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                "bytes": integer,
            },
        },
        "Summary": {
            "type": "object",
            "required": ["run", "state", "seed", "sequences", "ok", "failed", "outputs", "custom"],
            "properties": {
                "run": {"type": "string"},
                "state": {"type": "string", "enum": STATES},
                "seed": {"type": "integer"},
                "sequences": {"type": "integer"},
                "ok": integer,
                "failed": integer,
                "outputs": {"type": "object", "additionalProperties": {"type": "object"}},
                "custom": {"type": "object"},
                "targets_met": {"type": "boolean"},
                "stopped": {
                    "type": "object",
                    "required": ["reason", "sequences"],
                    "properties": {"reason": {"type": "string"}, "sequences": integer},
                },
            },
        },
        "Convergence": {
            "type": "object",
            "required": ["outputs"],
            "properties": {
                "outputs": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "array",
                        "items": {
                            "type": "array",
                            "minItems": 4,
                            "maxItems": 4,
                            "items": {"type": ["number", "null"]},
                            "description": "[sequences, mean, ci95 lo, ci95 hi]",
                        },
                    },
                }
            },
        },
        "Histogram": {
            "type": "object",
            "required": ["output", "bins", "edges", "counts", "count", "skipped"],
            "properties": {
                "output": {"type": "string"},
                "bins": {"type": "integer", "minimum": 0, "maximum": 200},
                "edges": {"type": "array", "items": {"type": "number"}},
                "counts": {"type": "array", "items": integer},
                "count": integer,
                "skipped": integer,
            },
        },
    }
