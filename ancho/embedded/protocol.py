"""Shared vocabulary of the Mesos v1 JSON APIs as the embedded cluster speaks them.

Messages stay plain JSON dicts (that is what crosses the wire); this module holds the
constants, validators and builders so master and agent construct them one way.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
import uuid
from typing import Any

from .http import Request, Response

__all__ = [
    "APPLICATION_JSON",
    "JSON",
    "MESOS_VERSION",
    "TERMINAL_STATES",
    "CallError",
    "accepts_media_type",
    "decode_json_call",
    "parse_call",
    "task_status",
    "validate_id",
]

JSON = dict[str, Any]

# pymesos parses this as dotted ints and enables v1 behaviour for >= 1.0.0.
MESOS_VERSION = "1.11.0"

APPLICATION_JSON = "application/json"
APPLICATION_PROTOBUF = "application/x-protobuf"

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


def decode_json_call(request: Request) -> Any:
    """The JSON body of a call to a Mesos 1.11 v1 endpoint, checked as Mesos checks it.

    405 for a non-POST; 400 without a Content-Type; the Content-Type must be exactly
    ``application/json`` (Mesos compares the whole header value, so parameters such
    as ``; charset=utf-8`` or other letter case are a 415, as is protobuf, which the
    embedded cluster does not speak); 400 for a body that is not JSON. No Accept
    check: Mesos looks at Accept only for calls that answer with a body.
    """
    if request.method != "POST":
        raise CallError(405, f"Expecting 'POST', received '{request.method}'")
    content_type = request.headers.get("Content-Type")
    if content_type is None:
        raise CallError(400, "Expecting 'Content-Type' to be present")
    if content_type == APPLICATION_PROTOBUF:
        raise CallError(
            415, f"The embedded cluster speaks only {APPLICATION_JSON}, not {APPLICATION_PROTOBUF}"
        )
    if content_type != APPLICATION_JSON:
        raise CallError(
            415, f"Expecting 'Content-Type' of {APPLICATION_JSON} or {APPLICATION_PROTOBUF}"
        )
    try:
        return json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CallError(400, f"Failed to parse body into JSON: {exc}") from exc


def accepts_media_type(accept: str | None, media_type: str) -> bool:
    """Whether an ``Accept`` header allows ``media_type``, as libprocess decides it.

    No header accepts everything; otherwise ``type/subtype``, then ``type/*``, then
    ``*/*`` is looked for (case-insensitively, whitespace ignored) and the first
    match decides: accepted unless its ``q`` is a number not above 0.
    """
    if accept is None:
        return True
    major = media_type.split("/")[0]
    entries = [e for e in "".join(accept.split()).split(",") if e]
    for candidate in (media_type, f"{major}/*", "*/*"):
        for entry in entries:
            tokens = [p for p in entry.split(";") if p]
            if not tokens or tokens[0].lower() != candidate.lower():
                continue
            params = tokens[1:]
            q = [v for k, _, v in (p.partition("=") for p in params) if k == "q"]
            if len(q) != 1:
                return True
            try:
                return float(q[0]) > 0
            except ValueError:
                return False
    return False


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


def is_uuid(encoded: str) -> bool:
    """Whether base64 ``encoded`` is a UUID as stout's ``UUID::fromBytes`` accepts one:
    16 bytes of a known version (1 to 5)."""
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        return False
    return len(raw) == 16 and 1 <= raw[6] >> 4 <= 5


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
