"""Task validation for ACCEPT/LAUNCH, after Mesos' master/validation.cpp.

Two levels, as in Mesos: a TaskInfo missing required protobuf fields fails the whole
call (400, :func:`check_task_shape`); a well-formed but unacceptable task gets
TASK_ERROR REASON_TASK_INVALID on its own (:func:`validate_task`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .frameworks import Framework
from .protocol import JSON, CallError, id_value, validate_id
from .resources import Resources

if TYPE_CHECKING:
    from .agents import AgentRecord

__all__ = ["check_task_shape", "validate_task"]


def check_task_shape(task: Any) -> None:
    """Raise :class:`CallError` (400) unless ``task`` has name, task_id and agent_id."""
    # Missing required protobuf fields fail JSON→protobuf parsing in Mesos: the
    # whole call is a 400, not a per-task TASK_ERROR.
    if not isinstance(task, dict) or not isinstance(task.get("name"), str):
        raise CallError(400, "TaskInfo requires 'name'")
    id_value(task, "task_id")
    id_value(task, "agent_id")


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
