"""Status updates the master answers reconciliation with (and KILLs of unknown tasks).

They come from the master's own knowledge, not from an executor: SOURCE_MASTER,
REASON_RECONCILIATION and no uuid, so schedulers need not acknowledge them.
"""

from __future__ import annotations

from .frameworks import Framework, Task
from .protocol import JSON, event, task_status

__all__ = ["reconcile_known", "reconcile_unknown"]


def reconcile_known(task: Task, agent_id: str) -> JSON:
    """UPDATE with the latest state the master knows of ``task``."""
    status = task_status(
        task.task_id,
        task.state,
        source="SOURCE_MASTER",
        agent_id=agent_id,
        executor_id=task.executor_id,
        reason="REASON_RECONCILIATION",
        message="Reconciliation: Latest task state",
    )
    return event("UPDATE", {"status": status})


def reconcile_unknown(
    framework: Framework,
    task_id: str,
    agent_id: str | None,
    registered: set[str],
    unreachable: set[str] | None = None,
) -> JSON:
    """UPDATE for a task the master does not know (``agent_id`` as the scheduler gave it;
    ``registered``/``unreachable``: the ids of the agents the master knows as such)."""
    # Classic frameworks get TASK_LOST; partition-aware ones TASK_GONE (agent known),
    # TASK_UNREACHABLE (agent unreachable) or TASK_UNKNOWN (agent not given or
    # unknown), as in Mesos 1.11.
    if agent_id is not None and agent_id in (unreachable or set()):
        state = "TASK_UNREACHABLE" if framework.partition_aware else "TASK_LOST"
        message = "Reconciliation: Task is unreachable"
    elif agent_id is not None and agent_id in registered:
        state = "TASK_GONE" if framework.partition_aware else "TASK_LOST"
        message = "Reconciliation: Task is unknown to the agent"
    else:
        state = "TASK_UNKNOWN" if framework.partition_aware else "TASK_LOST"
        message = "Reconciliation: Task is unknown"
    status = task_status(
        task_id,
        state,
        source="SOURCE_MASTER",
        agent_id=agent_id,
        reason="REASON_RECONCILIATION",
        message=message,
    )
    return event("UPDATE", {"status": status})
