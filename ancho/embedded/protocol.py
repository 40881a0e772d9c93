"""Shared vocabulary of the Mesos v1 JSON APIs as the embedded cluster speaks them.

Messages stay plain JSON dicts (that is what crosses the wire); this module holds the
constants, validators and builders so master and agent construct them one way.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

from .http import Request, Response

__all__ = [
    "JSON",
    "MESOS_VERSION",
    "TERMINAL_STATES",
    "CallError",
    "parse_call",
    "task_status",
    "validate_id",
]

JSON = dict[str, Any]

# pymesos parses this as dotted ints and enables v1 behaviour for >= 1.0.0.
MESOS_VERSION = "1.11.0"

TASK_STATES = frozenset(
    {
        "TASK_STAGING",
        "TASK_STARTING",
        "TASK_RUNNING",
        "TASK_KILLING",
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_UNREACHABLE",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
        "TASK_UNKNOWN",
    }
)
TERMINAL_STATES = frozenset(
    {
        "TASK_FINISHED",
        "TASK_FAILED",
        "TASK_KILLED",
        "TASK_ERROR",
        "TASK_LOST",
        "TASK_DROPPED",
        "TASK_GONE",
        "TASK_GONE_BY_OPERATOR",
    }
)


class CallError(Exception):
    """A call rejected before it is acted on; carries the HTTP answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> Response:
        """The HTTP response Mesos gives for this rejection (plain-text body)."""
        return Response(self.status, self.message.encode("utf-8") + b"\n")


def parse_call(request: Request) -> JSON:
    """Check method and media types, then decode the JSON call body.

    Mirrors the order of checks of the Mesos HTTP endpoints: 405 for a non-POST,
    400 without a Content-Type, 415 for anything but JSON (protobuf is not
    supported here), 406 when the client accepts neither JSON nor RecordIO, and 400
    for a body that is not a JSON object with a string ``type``.
    """
    if request.method != "POST":
        raise CallError(405, f"Expecting 'POST', received '{request.method}'")
    content_type = (request.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if not content_type:
        raise CallError(400, "Expecting 'Content-Type' to be present")
    if content_type != "application/json":
        raise CallError(415, f"Expecting 'Content-Type' of application/json, got {content_type}")
    accept = (request.headers.get("Accept") or "*/*").lower()
    if not any(m in accept for m in ("application/json", "application/recordio", "*/*")):
        raise CallError(406, "Expecting 'Accept' to allow application/json")
    try:
        call = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CallError(400, f"Failed to parse body into JSON: {exc}") from exc
    if not isinstance(call, dict) or not isinstance(call.get("type"), str):
        raise CallError(400, "Failed to validate call: expecting a JSON object with 'type'")
    return call


def body_of(call: JSON, field: str, *, required: bool = True) -> JSON:
    """Return the nested message ``call[field]`` (400 unless it is a JSON object)."""
    value = call.get(field)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise CallError(400, f"Failed to validate call: expecting '{field}' to be present")
    return value


def id_value(message: Any, field: str, *, required: bool = True) -> str | None:
    """Return ``message[field]["value"]`` or raise ``CallError(400)`` when malformed."""
    value = message.get(field) if isinstance(message, dict) else None
    if value is None and not required:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("value"), str):
        raise CallError(400, f"Failed to validate call: missing or invalid '{field}'")
    return str(value["value"])


def validate_id(value: str) -> str | None:
    """Mesos' ID rules (common/validation.cpp); return an error message or None."""
    if not value:
        return "ID must not be empty"
    if value in (".", ".."):
        return "'.' and '..' are disallowed"
    if "/" in value or "\\" in value:
        return "'/' and '\\' are disallowed"
    if any(not ch.isprintable() or ch.isspace() for ch in value):
        return "whitespace and non-printable characters are disallowed"
    return None


def new_uuid() -> str:
    """A random 16-byte UUID, base64-encoded as in TaskStatus.uuid."""
    return base64.b64encode(uuid.uuid4().bytes).decode("ascii")


def task_status(
    task_id: str,
    state: str,
    *,
    source: str,
    agent_id: str | None,
    executor_id: str | None = None,
    reason: str | None = None,
    message: str | None = None,
    with_uuid: bool = False,
) -> JSON:
    """Build a TaskStatus generated by the master or the agent (not by an executor)."""
    status: JSON = {
        "task_id": {"value": task_id},
        "state": state,
        "source": source,
        "timestamp": time.time(),
    }
    if agent_id is not None:
        status["agent_id"] = {"value": agent_id}
    if executor_id is not None:
        status["executor_id"] = {"value": executor_id}
    if reason is not None:
        status["reason"] = reason
    if message is not None:
        status["message"] = message
    if with_uuid:
        status["uuid"] = new_uuid()
    return status


def event(kind: str, body: JSON | None = None) -> JSON:
    """A v1 event: ``{"type": KIND, "kind": body}`` (HEARTBEAT/SHUTDOWN have no body)."""
    message: JSON = {"type": kind}
    if body is not None:
        message[kind.lower()] = body
    return message
