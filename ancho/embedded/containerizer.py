"""Containerizers: how the agent turns an ExecutorInfo into a running process.

The agent talks to the :class:`Containerizer` protocol only, so a Docker
containerizer can be added next to :class:`ProcessContainerizer` and selected by
:class:`CompositeContainerizer` from the ``ContainerInfo.type`` of the executor.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "CompositeContainerizer",
    "Container",
    "ContainerSpec",
    "Containerizer",
    "LaunchError",
    "ProcessContainerizer",
    "executor_environment",
]

logger = logging.getLogger("ancho.embedded.containerizer")


#: The PATH Mesos' launcher gives an executor whose environment has none.
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# How long to wait for the rest of an exited executor's process group to die.
_GROUP_EXIT_TIMEOUT_S = 1.0


class LaunchError(Exception):
    """The container could not be started; the message goes into TASK_FAILED."""


@dataclass(slots=True, frozen=True)
class ContainerSpec:
    """Everything a containerizer needs to start an executor."""

    container_id: str
    directory: Path
    command: dict[str, Any]  # CommandInfo
    container: dict[str, Any] | None  # ContainerInfo, None when absent
    environment: dict[str, str]  # the MESOS_*/LIBPROCESS_* variables the agent sets
    cpus: float = 0.0  # executor + first task: what a container's limits are set from
    mem_mb: float = 0.0
    labels: dict[str, str] | None = None  # framework/executor ids, for `docker ps`
    user: str | None = None  # FrameworkInfo.user: who owns the sandbox, as on a Mesos agent


class Container(Protocol):
    """A started container."""

    @property
    def pid(self) -> int:
        """The executor's process id (also its process group id)."""
        ...

    def wait(self) -> int:
        """Block until the executor exits; return its raw wait(2) status."""
        ...

    def signal(self, signum: int) -> None:
        """Send ``signum`` to every process of the container."""
        ...


class Containerizer(Protocol):
    """Starts containers of the kinds it supports."""

    def supports(self, container: dict[str, Any] | None) -> bool:
        """True when this containerizer can run ``container`` (a ContainerInfo)."""
        ...

    def launch(self, spec: ContainerSpec) -> Container:
        """Start the executor; raise :class:`LaunchError` when it cannot start."""
        ...


def _runs_in_group(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is still alive, not a zombie. Orphans go to
    PID 1, which may reap them late (some inits poll once a second): a group of zombies
    is already dead."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # gone meanwhile
        # pid (comm) state ppid pgrp …; comm may hold spaces and parentheses.
        fields = stat[stat.rfind(b")") + 2 :].split()
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _wait_status(returncode: int) -> int:
    # Mesos reports the raw waitpid() status (WEXITSTATUS in the high byte, the
    # terminating signal in the low bits); Popen gives -signal or the exit code.
    return -returncode if returncode < 0 else returncode << 8


class _ProcessContainer:
    def __init__(self, popen: subprocess.Popen[bytes]) -> None:
        self._popen = popen
        self._lock = threading.Lock()

    @property
    def pid(self) -> int:
        return self._popen.pid

    def wait(self) -> int:
        status = _wait_status(self._popen.wait())
        # Mesos destroys the whole container when its executor exits, so whatever the
        # executor left in its process group is killed too; waiting (briefly) for the
        # group to empty means nothing outlives the reported termination.
        deadline = time.monotonic() + _GROUP_EXIT_TIMEOUT_S
        while time.monotonic() < deadline:
            try:
                os.killpg(self._popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                break
            if not _runs_in_group(self._popen.pid):
                break  # only zombies are left, for PID 1 to reap whenever it does
            time.sleep(0.01)
        return status

    def signal(self, signum: int) -> None:
        # The executor leads its own session (start_new_session), so its pid is the
        # process group id: the signal reaches whatever it forked, too.
        with self._lock, contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._popen.pid, signum)


def _command_environment(command: dict[str, Any]) -> dict[str, str]:
    variables = command.get("environment", {}).get("variables", [])
    result: dict[str, str] = {}
    for variable in variables:
        kind = variable.get("type", "VALUE")
        if kind != "VALUE":
            raise LaunchError(f"environment variable type {kind} is not supported")
        result[str(variable["name"])] = str(variable.get("value", ""))
    return result


def executor_environment(agent: dict[str, str], command: dict[str, Any]) -> dict[str, str]:
    """An executor's whole environment, as the Mesos containerizer's launcher builds it.

    The agent's variables, then the CommandInfo's (which win), and ``PATH`` set to the
    host default when neither gives one (``os::host_default_path()`` in stout).
    """
    env = {**agent, **_command_environment(command)}
    env.setdefault("PATH", DEFAULT_PATH)
    return env


class ProcessContainerizer:
    """Runs executors as plain processes, like the Mesos containerizer without isolation.

    The executor runs as the current user in its own session, so that a kill of its
    process group reaches every process it started. Its environment is what the Mesos
    containerizer gives: the agent's variables (``spec.environment``) overridden by the
    CommandInfo's, plus Mesos' default ``PATH`` when neither sets one; nothing of this
    process' own environment.
    """

    def supports(self, container: dict[str, Any] | None) -> bool:
        """ContainerInfo absent, or type MESOS without an image."""
        if container is None:
            return True
        return container.get("type", "MESOS") == "MESOS" and "mesos" not in container

    def launch(self, spec: ContainerSpec) -> Container:
        """Start ``spec.command`` in ``spec.directory`` with stdout/stderr files there."""
        command = spec.command
        value = command.get("value")
        if not isinstance(value, str) or not value:
            raise LaunchError("CommandInfo.value is missing")
        executable: str | None = None
        if command.get("shell", True):
            argv = ["/bin/sh", "-c", value]
        else:
            # shell=false: value is the program and arguments the whole argv (argv[0] too).
            executable = value
            argv = [str(a) for a in command.get("arguments", [])] or [value]
        env = executor_environment(spec.environment, command)
        spec.directory.mkdir(parents=True, exist_ok=True)
        try:
            with (
                open(spec.directory / "stdout", "ab") as stdout,
                open(spec.directory / "stderr", "ab") as stderr,
            ):
                popen = subprocess.Popen(
                    argv,
                    executable=executable,
                    cwd=spec.directory,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=stdout,
                    stderr=stderr,
                    close_fds=True,
                    start_new_session=True,
                )
        except OSError as exc:
            raise LaunchError(f"Failed to launch {argv[0]}: {exc}") from exc
        logger.info("container %s started, pid %d", spec.container_id, popen.pid)
        return _ProcessContainer(popen)


class CompositeContainerizer:
    """Dispatch to the first containerizer that supports the ContainerInfo."""

    def __init__(self, *containerizers: Containerizer) -> None:
        self._containerizers = containerizers

    def supports(self, container: dict[str, Any] | None) -> bool:
        """True when any member supports ``container``."""
        return any(c.supports(container) for c in self._containerizers)

    def launch(self, spec: ContainerSpec) -> Container:
        """Launch with the first supporting member, or raise :class:`LaunchError`."""
        for containerizer in self._containerizers:
            if containerizer.supports(spec.container):
                return containerizer.launch(spec)
        kind = (spec.container or {}).get("type", "MESOS")
        raise LaunchError(
            f"No containerizer supports ContainerInfo type {kind} (with this configuration):"
            " the embedded cluster runs executors as processes (type MESOS without an"
            " image); Docker is not available in it yet"
        )
