"""Scheduler call and task validation, after Mesos' master/validation.cpp.

Three levels, as in Mesos: :func:`parse_scheduler_call` turns the JSON body into the
call the master reads as Mesos' JSON→protobuf parsing does (``null`` is an unset
field, a wrong JSON type or a missing required field is a 400 for the whole call);
:func:`validate_call` applies the call-level rules (``scheduler::call::validate``);
a well-formed but unacceptable task gets TASK_ERROR REASON_TASK_INVALID on its own
(:func:`validate_task`).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any

from .frameworks import Framework
from .protocol import JSON, CallError, id_value, is_uuid, validate_id
from .resources import Resources

if TYPE_CHECKING:
    from .agents import AgentRecord

__all__ = ["parse_scheduler_call", "validate_call", "validate_task", "validate_update"]

# Calls whose body message Mesos requires (validation.cpp: "Expecting '…' to be present").
_BODY_REQUIRED = frozenset(
    {
        "ACCEPT",
        "DECLINE",
        "ACCEPT_INVERSE_OFFERS",
        "DECLINE_INVERSE_OFFERS",
        "KILL",
        "SHUTDOWN",
        "ACKNOWLEDGE",
        "ACKNOWLEDGE_OPERATION_STATUS",
        "RECONCILE",
        "RECONCILE_OPERATIONS",
        "MESSAGE",
        "REQUEST",
        "UPDATE_FRAMEWORK",
    }
)


def parse_scheduler_call(body: Any) -> JSON:
    """The call as the master reads it, or :class:`CallError` 400 as Mesos answers."""
    if not isinstance(body, dict):
        raise CallError(400, "Failed to convert JSON into Call protobuf: expecting a JSON object")
    missing: list[str] = []
    try:
        call = _convert(body, CALL, "", missing)
    except ValueError as exc:
        raise CallError(400, f"Failed to convert JSON into Call protobuf: {exc}") from exc
    if missing:
        raise CallError(
            400, "Failed to validate scheduler::Call: Not initialized: " + ", ".join(missing)
        )
    return call


def _fail(message: str) -> CallError:
    return CallError(400, f"Failed to validate scheduler::Call: {message}")


def _id(message: JSON, field: str) -> str:
    value: str = message.get(field, {}).get("value", "")
    return value


def _check_uuid(encoded: str) -> None:
    if not is_uuid(encoded):
        raise _fail("Not a valid UUID")


def validate_call(call: JSON, principal: str | None) -> None:
    """Mesos' ``scheduler::call::validate`` for a parsed call (400 on failure)."""
    kind = call.get("type")
    if kind is None:
        raise _fail("Expecting 'type' to be present")
    if kind == "SUBSCRIBE":
        if "subscribe" not in call:
            raise _fail("Expecting 'subscribe' to be present")
        info = call["subscribe"]["framework_info"]
        if _id(info, "id") != _id(call, "framework_id"):
            raise _fail("'framework_id' differs from 'subscribe.framework_info.id'")
        if principal is not None and "principal" in info and info["principal"] != principal:
            raise _fail(
                f"Authenticated principal '{principal}' does not match principal"
                f" '{info['principal']}' set in `FrameworkInfo`"
            )
        return
    if "framework_id" not in call:
        raise _fail("Expecting 'framework_id' to be present")
    field = kind.lower()
    if kind in _BODY_REQUIRED and field not in call:
        raise _fail(f"Expecting '{field}' to be present")
    if kind in ("ACKNOWLEDGE", "ACKNOWLEDGE_OPERATION_STATUS"):
        _check_uuid(call[field]["uuid"])
    if kind == "ACKNOWLEDGE_OPERATION_STATUS" and "agent_id" not in call[field]:
        raise _fail("Expecting 'agent_id' to be present")
    framework_info = call.get(field, {}).get("framework_info", {})
    if kind == "UPDATE_FRAMEWORK" and _id(framework_info, "id") != _id(call, "framework_id"):
        raise _fail("'framework_id' differs from 'update_framework.framework_info.id'")


def validate_update(old: JSON, new: JSON) -> str | None:
    """Mesos' ``framework::validateUpdate``: what a FrameworkInfo may not change."""
    if old.get("principal") != new.get("principal"):
        return "Changing framework's principal is not allowed."
    if new.get("user", "") != old.get("user", ""):
        return (
            "Updating 'FrameworkInfo.user' is unsupported; attempted to update from"
            f" '{old.get('user', '')}' to '{new.get('user', '')}'"
        )
    if bool(new.get("checkpoint")) != bool(old.get("checkpoint")):
        return (
            "Updating 'FrameworkInfo.checkpoint' is unsupported; attempted to update from"
            f" '{str(bool(old.get('checkpoint'))).lower()}'"
            f" to '{str(bool(new.get('checkpoint'))).lower()}'"
        )
    return None


def validate_task(
    framework: Framework, task: JSON, pool: Resources, agent: AgentRecord
) -> tuple[str | None, Resources, Resources]:
    """Mesos' task validation (master/validation.cpp), the parts that apply here.

    Returns ``(error, task_resources, executor_resources)``: the error message of an
    invalid task (resources then empty), else None and what the task and its executor
    take from ``pool`` — no executor resources when the executor already runs.
    """
    empty = Resources()
    task_id = task["task_id"]["value"]
    if (message := validate_id(task_id)) is not None:
        return f"Task ID '{task_id}' is invalid: {message}", empty, empty
    if task_id in framework.tasks:
        return f"Task has duplicate ID: {task_id}", empty, empty
    if task["agent_id"]["value"] != agent.agent_id:
        return f"Task uses invalid agent: {task['agent_id']['value']}", empty, empty
    executor = task.get("executor")
    if executor is not None and "command" in task:
        return "TaskInfo must not have both 'command' and 'executor'", empty, empty
    if executor is None:
        if "command" in task:
            return (
                "Command tasks (TaskInfo.command without an executor) are not supported"
                " by the embedded cluster: give the task an ExecutorInfo",
                empty,
                empty,
            )
        return "Task should have one of CommandInfo or ExecutorInfo present", empty, empty
    if not isinstance(executor, dict):
        return "Invalid ExecutorInfo", empty, empty
    try:
        executor_id = id_value(executor, "executor_id")
    except CallError:
        return "ExecutorInfo requires 'executor_id'", empty, empty
    assert executor_id is not None
    if (message := validate_id(executor_id)) is not None:
        return f"Executor ID '{executor_id}' is invalid: {message}", empty, empty
    if not isinstance(executor.get("command"), dict):
        return "ExecutorInfo requires 'command'", empty, empty
    executor_fw = id_value(executor, "framework_id", required=False)
    if executor_fw is not None and executor_fw != framework.framework_id:
        return "ExecutorInfo has an invalid FrameworkID", empty, empty
    try:
        task_resources = Resources.from_json(task.get("resources", []))
        executor_resources = Resources.from_json(executor.get("resources", []))
    except ValueError as exc:
        return f"Task uses invalid resources: {exc}", empty, empty
    if task_resources.is_empty():
        return "Task uses no resources", empty, empty
    existing = agent.executor_info(framework.framework_id, executor_id)
    if existing is not None:
        candidate = dict(executor, framework_id={"value": framework.framework_id})
        if candidate != existing:
            return (
                f"ExecutorInfo is not compatible with the ExecutorInfo of running"
                f" executor '{executor_id}'",
                empty,
                empty,
            )
        executor_resources = Resources()
    needed = task_resources + executor_resources
    if not pool.contains(needed):
        return (
            "Task uses more resources than available in the offers: needs"
            f" {needed.to_json()}, has {pool.to_json()}",
            empty,
            empty,
        )
    return None, task_resources, executor_resources


# ----------------------------------------------------------------------------- schema
# The parts of scheduler.proto and mesos.proto the master reads, enough to parse a
# call as stout's JSON→protobuf parser does. A field is (kind, required, repeated);
# a kind is a scalar name, a frozenset of enum names, or a nested message (a dict).
# Fields not listed pass through untouched apart from nulls (TaskInfo.resources and
# ExecutorInfo are judged later, per task, by validate_task).
Kind = Any
Field = tuple[Kind, bool, bool]


def _opt(kind: Kind) -> Field:
    return (kind, False, False)


def _req(kind: Kind) -> Field:
    return (kind, True, False)


def _rep(kind: Kind) -> Field:
    return (kind, False, True)


_ENUM: frozenset[str] = frozenset()  # an enum whose names are not checked here
_ID = {"value": _req("string")}
_FILTERS = {"refuse_seconds": _opt("double")}
_FRAMEWORK_INFO = {
    "user": _req("string"),
    "name": _req("string"),
    "id": _opt(_ID),
    "failover_timeout": _opt("double"),
    "checkpoint": _opt("bool"),
    "role": _opt("string"),
    "roles": _rep("string"),
    "hostname": _opt("string"),
    "principal": _opt("string"),
    "webui_url": _opt("string"),
    "capabilities": _rep({"type": _opt(_ENUM)}),
    "labels": _opt({"labels": _rep({"key": _req("string"), "value": _opt("string")})}),
}
_TASK_INFO = {
    "name": _req("string"),
    "task_id": _req(_ID),
    "agent_id": _req(_ID),
    "executor": _opt({"executor_id": _req(_ID), "framework_id": _opt(_ID)}),
    "data": _opt("bytes"),
}
_OFFER_IDS = {"offer_ids": _rep(_ID), "filters": _opt(_FILTERS)}
_INVERSE = {"inverse_offer_ids": _rep(_ID), "filters": _opt(_FILTERS)}
_ROLES = {"roles": _rep("string")}
CALL_TYPES = frozenset(
    {
        "UNKNOWN", "SUBSCRIBE", "TEARDOWN", "ACCEPT", "DECLINE", "ACCEPT_INVERSE_OFFERS",
        "DECLINE_INVERSE_OFFERS", "REVIVE", "KILL", "SHUTDOWN", "ACKNOWLEDGE",
        "ACKNOWLEDGE_OPERATION_STATUS", "RECONCILE", "RECONCILE_OPERATIONS", "MESSAGE",
        "REQUEST", "SUPPRESS", "UPDATE_FRAMEWORK",
    }
)  # fmt: skip
CALL = {
    "framework_id": _opt(_ID),
    "type": _opt(CALL_TYPES),
    "subscribe": _opt(
        {
            "framework_info": _req(_FRAMEWORK_INFO),
            "suppressed_roles": _rep("string"),
            "force": _opt("bool"),
        }
    ),
    "accept": _opt(
        {
            "offer_ids": _rep(_ID),
            "operations": _rep(
                {"type": _opt(_ENUM), "launch": _opt({"task_infos": _rep(_TASK_INFO)})}
            ),
            "filters": _opt(_FILTERS),
        }
    ),
    "decline": _opt(_OFFER_IDS),
    "accept_inverse_offers": _opt(_INVERSE),
    "decline_inverse_offers": _opt(_INVERSE),
    "revive": _opt(_ROLES),
    "suppress": _opt(_ROLES),
    "kill": _opt({"task_id": _req(_ID), "agent_id": _opt(_ID)}),
    "shutdown": _opt({"executor_id": _req(_ID), "agent_id": _req(_ID)}),
    "acknowledge": _opt({"agent_id": _req(_ID), "task_id": _req(_ID), "uuid": _req("bytes")}),
    "acknowledge_operation_status": _opt(
        {
            "agent_id": _opt(_ID),
            "resource_provider_id": _opt(_ID),
            "uuid": _req("bytes"),
            "operation_id": _req(_ID),
        }
    ),
    "reconcile": _opt({"tasks": _rep({"task_id": _req(_ID), "agent_id": _opt(_ID)})}),
    "reconcile_operations": _opt(
        {"operations": _rep({"operation_id": _req(_ID), "agent_id": _opt(_ID)})}
    ),
    "message": _opt({"agent_id": _req(_ID), "executor_id": _req(_ID), "data": _req("bytes")}),
    "request": _opt({"requests": _rep({"agent_id": _opt(_ID)})}),
    "update_framework": _opt(
        {"framework_info": _req(_FRAMEWORK_INFO), "suppressed_roles": _rep("string")}
    ),
}


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value if v is not None]
    return value


def _convert(message: JSON, schema: dict[str, Field], path: str, missing: list[str]) -> JSON:
    """``message`` with nulls dropped and scalars normalised; required fields that are
    absent are added to ``missing`` (protobuf paths); a wrong type is a ValueError."""
    out: JSON = {}
    for name, value in message.items():
        if value is None:
            continue  # stout: null is an unset field
        if name not in schema:
            out[name] = _drop_nulls(value)
            continue
        kind, _, repeated = schema[name]
        if repeated:
            items = value if isinstance(value, list) else [value]
            converted = [
                _scalar_or_message(item, kind, name, f"{path}{name}[{i}]", missing)
                for i, item in enumerate(v for v in items if v is not None)
            ]
            out[name] = [c for c in converted if c is not None]
        else:
            if isinstance(value, list):
                raise ValueError(f"Not expecting a JSON array for field '{name}'")
            converted_one = _scalar_or_message(value, kind, name, f"{path}{name}", missing)
            if converted_one is not None:
                out[name] = converted_one
    for name, (_, required, _) in schema.items():
        if required and name not in out:
            missing.append(f"{path}{name}")
    return out


def _scalar_or_message(value: Any, kind: Kind, name: str, path: str, missing: list[str]) -> Any:
    unexpected = ValueError(f"Not expecting a JSON {_json_kind(value)} for field '{name}'")
    if isinstance(kind, dict):
        if not isinstance(value, dict):
            raise unexpected
        return _convert(value, kind, path + ".", missing)
    if isinstance(kind, frozenset):
        if not isinstance(value, str):
            raise unexpected
        # proto2: an unknown name of an optional enum leaves the field unset.
        return value if not kind or value in kind else None
    if kind == "string":
        if not isinstance(value, str):
            raise unexpected
        return value
    if kind == "bytes":
        if not isinstance(value, str):
            raise unexpected
        try:
            base64.b64decode(value, validate=True)
        except binascii.Error as exc:
            raise ValueError(f"Failed to base64 decode bytes field '{name}': {exc}") from exc
        return value
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if value in ("true", "false"):
            return value == "true"
        raise ValueError(f"Failed to parse '{value}' as a JSON boolean for field '{name}'")
    # "double": a JSON number, or a string holding one.
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise unexpected
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"Failed to parse '{value}' as a JSON number for field '{name}'") from None
