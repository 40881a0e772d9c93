"""The JSON of Mesos 1.11's state endpoints: ``/master/state`` and the agent's ``/state``.

Shapes follow Mesos' own model (``src/common/http.cpp``, the master's read-only handler
and the agent's ``Http::state``): resources as one object of scalars (``cpus``, ``gpus``,
``mem``, ``disk`` always present) with ranges as text (``"[31000-32000]"``), tasks with
their statuses (state and timestamp only: never ``data`` or ``message``), and the
master's executors with their CommandInfo — environment included, exactly as a real
master shows it. These builders are pure: the master and the agent call them with
their records, under the cluster lock.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .protocol import JSON
from .resources import Resources

__all__ = [
    "command_json",
    "executor_info_json",
    "framework_info_fields",
    "resources_object",
    "task_info_json",
    "task_json",
    "trim_status",
]

#: What a TaskStatus keeps in a task's ``statuses`` (Mesos shows no more of it).
_STATUS_FIELDS = ("state", "timestamp", "labels", "container_status", "healthy")


def resources_object(resources: Resources) -> JSON:
    """Resources as Mesos' endpoints show them: ``{"cpus": 1.0, …, "ports": "[…]"}``."""
    out: JSON = {"cpus": 0.0, "gpus": 0.0, "mem": 0.0, "disk": 0.0}
    for name, value in resources.scalars.items():
        out[name] = float(value)
    for name, ranges in resources.ranges.items():
        if ranges:
            out[name] = "[" + ", ".join(f"{b}-{e}" for b, e in ranges) + "]"
    return out


def _resources(items: Any) -> Resources:
    try:
        return Resources.from_json(items or [])
    except ValueError:  # validated at launch; never fail a state query on it
        return Resources()


def _labels(message: JSON) -> list[Any] | None:
    labels = message.get("labels")
    if isinstance(labels, dict):
        return list(labels.get("labels", []))
    return None


def _environment(environment: JSON) -> JSON:
    """Environment as protobuf JSON: every variable with its ``type`` (default VALUE)."""
    variables = []
    for variable in environment.get("variables", []):
        item: JSON = {"name": variable.get("name", ""), "type": variable.get("type", "VALUE")}
        for key in ("value", "secret"):
            if key in variable:
                item[key] = variable[key]
        variables.append(item)
    return {"variables": variables} if variables else {}


def command_json(command: JSON) -> JSON:
    """A CommandInfo as Mesos shows it: shell, value, argv, environment, uris."""
    out: JSON = {}
    if "shell" in command:
        out["shell"] = bool(command["shell"])
    if "value" in command:
        out["value"] = command["value"]
    out["argv"] = [str(a) for a in command.get("arguments", [])]
    if isinstance(command.get("environment"), dict):
        out["environment"] = _environment(command["environment"])
    out["uris"] = [
        {"value": u.get("value", ""), "executable": bool(u.get("executable", False))}
        for u in command.get("uris", [])
    ]
    return out


def executor_info_json(info: JSON) -> JSON:
    """An ExecutorInfo as the master's ``frameworks[].executors[]`` shows it."""
    resources = _resources(info.get("resources"))
    out: JSON = {
        "executor_id": info["executor_id"]["value"],
        "name": info.get("name", ""),
        "framework_id": info.get("framework_id", {}).get("value", ""),
        "command": command_json(info.get("command", {})),
        "resources": resources_object(resources),
    }
    if not resources.is_empty():
        out["role"] = "*"
    if (labels := _labels(info)) is not None:
        out["labels"] = labels
    if "type" in info:
        out["type"] = info["type"]
    return out


def trim_status(status: JSON) -> JSON:
    """The part of a TaskStatus a task keeps in its ``statuses``."""
    out: JSON = {}
    for key in _STATUS_FIELDS:
        if key in status:
            out[key] = status[key]
    if isinstance(out.get("labels"), dict):
        out["labels"] = out["labels"].get("labels", [])
    return out


def task_json(
    info: JSON,
    *,
    framework_id: str,
    agent_id: str,
    state: str,
    resources: Resources,
    statuses: Iterable[JSON],
) -> JSON:
    """A Task (launched from TaskInfo ``info``) as both endpoints show it."""
    executor = info.get("executor") or {}
    out: JSON = {
        "id": info["task_id"]["value"],
        "name": info.get("name", ""),
        "framework_id": framework_id,
        "executor_id": executor.get("executor_id", {}).get("value", ""),
        "slave_id": agent_id,
        "state": state,
        "resources": resources_object(resources),
        "role": "*",
        "statuses": list(statuses),
    }
    user = (info.get("command") or {}).get("user") or (executor.get("command") or {}).get("user")
    if user:
        out["user"] = user
    if (labels := _labels(info)) is not None:
        out["labels"] = labels
    for key in ("discovery", "container", "health_check"):
        if key in info:
            out[key] = info[key]
    return out


def task_info_json(info: JSON, agent_id: str) -> JSON:
    """A queued TaskInfo as the agent's ``queued_tasks`` shows it."""
    out: JSON = {
        "id": info["task_id"]["value"],
        "name": info.get("name", ""),
        "slave_id": agent_id,
        "resources": resources_object(_resources(info.get("resources"))),
        "role": "*",
    }
    if "command" in info:
        out["command"] = command_json(info["command"])
    if isinstance(info.get("executor"), dict):
        out["executor_id"] = info["executor"]["executor_id"]["value"]
    if "discovery" in info:
        out["discovery"] = info["discovery"]
    return out


def framework_info_fields(info: JSON) -> JSON:
    """What both endpoints show of a FrameworkInfo (protobuf defaults filled in)."""
    out: JSON = {
        "user": info.get("user", ""),
        "failover_timeout": float(info.get("failover_timeout", 0.0)),
        "checkpoint": bool(info.get("checkpoint", False)),
        "hostname": info.get("hostname", ""),
    }
    if "principal" in info:
        out["principal"] = info["principal"]
    multi_role = any(c.get("type") == "MULTI_ROLE" for c in info.get("capabilities", []))
    if multi_role:
        out["roles"] = list(info.get("roles", []))
    else:
        out["role"] = info.get("role", "*")
    return out


def duration_flag(seconds: float) -> str:
    """A duration as Mesos prints a Duration flag (``500ms``, ``10secs``, ``1.5mins``)."""
    units = (
        (1e-6, 1e-9, "ns"),
        (1e-3, 1e-6, "us"),
        (1.0, 1e-3, "ms"),
        (60.0, 1.0, "secs"),
        (3600.0, 60.0, "mins"),
        (86400.0, 3600.0, "hrs"),
        (604800.0, 86400.0, "days"),
    )
    for below, unit, name in units:
        if abs(seconds) < below:
            return f"{seconds / unit:.15g}{name}"
    return f"{seconds / 604800.0:.15g}weeks"
