"""Agent recovery: checkpointed executors survive a restart of their agent, as in Mesos.

For frameworks with ``FrameworkInfo.checkpoint`` the agent writes what it knows of each
executor (its infos, container, pid, directory and tasks) under
``work_dir/meta/slaves/<agent>/frameworks/<fw>/executors/<eid>/runs/<cid>/executor.json``
(Mesos' checkpoint layout) whenever it changes, and removes it when the executor is
gone. An agent restarted on the same work directory (``ancho cluster kill agent ID
--restart``) reads them back: an executor whose process still runs waits, as
REGISTERING, for its executor to re-subscribe within ``executor_reregistration_timeout``
(pymesos executors of checkpointing frameworks retry for ``MESOS_RECOVERY_TIMEOUT``);
one that does not is destroyed and its tasks end TASK_LOST (TASK_GONE for
PARTITION_AWARE frameworks) with REASON_EXECUTOR_REREGISTRATION_TIMEOUT. Executors of
frameworks that do not checkpoint are not recovered: their processes, orphans now, are
killed, as Mesos' containerizer destroys containers it cannot recover.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

__all__ = [
    "RecoveredContainer", "alive", "checkpoint", "forget", "kill_orphans", "load",
    "processes_under",
]  # fmt: skip

_FILE = "executor.json"


def run_folder(work_dir: Path, agent_id: str, framework_id: str, executor_id: str,
               container_id: str) -> Path:  # fmt: skip
    """Where one executor run's checkpoint lives."""
    return (
        work_dir / "meta" / "slaves" / agent_id / "frameworks" / framework_id
        / "executors" / executor_id / "runs" / container_id
    )  # fmt: skip


def checkpoint(folder: Path, record: dict[str, Any]) -> None:
    """Write ``record`` atomically (a reader never sees half a checkpoint)."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / (_FILE + ".tmp")
    tmp.write_text(json.dumps(record), "utf-8")
    tmp.replace(folder / _FILE)


def forget(folder: Path) -> None:
    """The executor is gone: its checkpoint goes too."""
    with contextlib.suppress(OSError):
        (folder / _FILE).unlink()


def load(work_dir: Path, agent_id: str) -> list[dict[str, Any]]:
    """Every executor checkpoint this agent left."""
    root = work_dir / "meta" / "slaves" / agent_id / "frameworks"
    records = []
    for path in sorted(root.glob(f"*/executors/*/runs/*/{_FILE}")):
        try:
            records.append(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError):
            continue  # a torn or unreadable checkpoint: nothing to recover
    return records


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def processes_under(folder: Path) -> list[int]:
    """Live processes whose working directory is inside ``folder`` (executors run in
    their sandboxes)."""
    root = str(folder.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if (cwd == root or cwd.startswith(root + "/")) and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def kill_orphans(sandboxes: Path, keep: set[int]) -> list[int]:
    """SIGKILL the process groups working inside ``sandboxes`` except those in ``keep``."""
    killed = []
    for pid in processes_under(sandboxes):
        try:
            pgid = os.getpgid(pid)
        except OSError:
            continue
        if pgid not in keep:
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
                killed.append(pgid)
    return killed


class RecoveredContainer:
    """A container started by an earlier agent process: not our child, so it is watched
    through /proc rather than waited for."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._signalled: int | None = None

    @property
    def pid(self) -> int:
        return self._pid

    def wait(self) -> int:
        while alive(self._pid):
            time.sleep(0.1)
        # The exit status of a process that is not our child is unknown: report the
        # signal we sent, else a plain exit.
        return self._signalled if self._signalled is not None else 0

    def signal(self, signum: int) -> None:
        self._signalled = signum
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pid, signum)
