"""The OpenAPI 3.1 document of the REST API.

The run-spec schema is the package's JSON Schema (one definition): its ``$defs`` become
component schemas and its ``$ref``s are rewritten to point at them.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

from ..spec import schema as run_spec_schema


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


ERROR = _json(_ref("Error"), "error")
RUN_ID = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}


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
    auth_errors = {"401": ERROR, "404": ERROR}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Ancho",
            "version": "1",
            "description": "Run Python simulation models at scale.",
        },
        "servers": [{"url": "/"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
        "paths": {
            "/api/v1/runs": {
                "post": {
                    "summary": "Submit a run",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("RunSpec")}},
                    },
                    "responses": {
                        "201": _json(_ref("Submitted"), "the run is stored and queued"),
                        "400": ERROR,
                        "401": ERROR,
                    },
                },
                "get": {
                    "summary": "The caller's runs, newest first",
                    "responses": {"200": _json(_ref("RunList"), "runs"), "401": ERROR},
                },
            },
            "/api/v1/runs/{id}": {
                "parameters": [RUN_ID],
                "get": {
                    "summary": "A run's state, counts, timestamps and seed",
                    "responses": {"200": _json(_ref("Run"), "the run"), **auth_errors},
                },
                "delete": {
                    "summary": "Kill a run",
                    "responses": {"202": _json(_ref("Killed"), "kill requested"), **auth_errors},
                },
            },
            "/api/v1/runs/{id}/results": {
                "parameters": [RUN_ID],
                "get": {
                    "summary": "Every sequence, in sequence order (streamed)",
                    "parameters": [
                        {
                            "name": "format",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["jsonl", "csv"]},
                        }
                    ],
                    "responses": {
                        "200": {
                            "description": "one line per sequence",
                            "content": {
                                "application/x-ndjson": {"schema": {"type": "string"}},
                                "text/csv": {"schema": {"type": "string"}},
                            },
                        },
                        "400": ERROR,
                        **auth_errors,
                    },
                },
            },
            "/api/v1/runs/{id}/summary": {
                "parameters": [RUN_ID],
                "get": {
                    "summary": "The summary JSON",
                    "responses": {"200": _json(_ref("Summary"), "the summary"), **auth_errors},
                },
            },
            "/api/v1/runs/{id}/logs": {
                "parameters": [RUN_ID],
                "get": {
                    "summary": "Scheduler, executor and model log lines (JSON lines)",
                    "parameters": [
                        {
                            "name": "follow",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "string", "enum": ["0", "1"]},
                        },
                        {
                            "name": "after",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer", "minimum": 0},
                        },
                    ],
                    "responses": {
                        "200": {
                            "description": "log lines",
                            "content": {"application/x-ndjson": {"schema": {"type": "string"}}},
                        },
                        "400": ERROR,
                        **auth_errors,
                    },
                },
            },
            "/api/v1/models": {
                "post": {
                    "summary": "Upload a model (.tar.gz) for sha256: sources",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/gzip": {"schema": {"type": "string", "format": "binary"}}
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
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")},
                },
            },
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": _json({"type": "object"}, "alive")},
                },
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {
                        "200": {
                            "description": "text format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                },
            },
        },
    }


def _shapes() -> dict[str, Any]:
    number = {"type": ["number", "null"]}
    counts = {
        "type": "object",
        "required": ["total", "ok", "failed", "running"],
        "properties": {k: {"type": "integer"} for k in ("total", "ok", "failed", "running")},
    }
    states = ["QUEUED", "STAGING", "RUNNING", "SUMMARIZING", "FINISHED", "FAILED", "KILLED"]
    run = {
        "type": "object",
        "required": ["id", "name", "state", "seed", "counts"],
        "properties": {
            "id": {"type": "string"},
            "name": {"type": "string"},
            "state": {"type": "string", "enum": states},
            "owner": {"type": "string"},
            "seed": {"type": "integer"},
            "counts": counts,
            "outputs": {"type": ["array", "null"], "items": {"type": "string"}},
            "reason": {"type": ["string", "null"]},
            "created_at": number,
            "started_at": number,
            "finished_at": number,
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
        "RunList": {
            "type": "object",
            "required": ["runs"],
            "properties": {"runs": {"type": "array", "items": _ref("Run")}},
        },
        "Submitted": {
            "type": "object",
            "required": ["id", "state"],
            "properties": {"id": {"type": "string"}, "state": {"type": "string", "enum": states}},
        },
        "Killed": {
            "type": "object",
            "required": ["id", "state"],
            "properties": {
                "id": {"type": "string"},
                "state": {"type": "string", "enum": states},
                "kill_requested": {"type": "boolean"},
            },
        },
        "Uploaded": {
            "type": "object",
            "required": ["source"],
            "properties": {
                "source": {"type": "string", "pattern": "^sha256:[0-9a-f]{64}$"},
                "bytes": {"type": "integer"},
            },
        },
        "Summary": {
            "type": "object",
            "required": ["run", "state", "outputs"],
            "properties": {
                "run": {"type": "string"},
                "state": {"type": "string"},
                "seed": {"type": "integer"},
                "sequences": {"type": "integer"},
                "ok": {"type": "integer"},
                "failed": {"type": "integer"},
                "outputs": {"type": "object"},
                "custom": {"type": "object"},
            },
        },
    }
