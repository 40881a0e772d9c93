"""The Docker containerizer of the embedded agent: what Mesos' Docker containerizer does
with an ExecutorInfo whose ContainerInfo has type DOCKER, through the ``docker`` SDK.

* ``docker.image`` is run with its entrypoint (``CommandInfo.shell`` false and no value),
  or ``CommandInfo.value`` as the command; the Mesos executor environment is passed in.
* The sandbox is mounted at ``/mnt/mesos/sandbox`` (``MESOS_SANDBOX``), as Mesos does;
  ``ContainerInfo.volumes`` are bind mounts (``RO``/``RW``).
* ``docker.network`` HOST (the default here) shares the agent's network, so the executor
  reaches the agent on loopback; NONE and BRIDGE map to Docker's.
* Limits: ``--cpus`` and ``--memory`` (swap included, so none) from the executor's
  resources (plus its first task's); labels name the framework, executor and container.
* ``docker.parameters`` are ``docker run --KEY=VALUE`` flags in Mesos; the ones Ancho
  uses are honoured (``read-only``, ``cap-drop``, ``cap-add``, ``security-opt``,
  ``pids-limit``, ``user``, ``tmpfs``); any other is a launch failure naming it.
* The container runs as the image's user (uid 1000) when the agent runs as root, else
  as the agent's own uid and gid (so it can write what that user owns, e.g. an SQLite
  store); the sandbox is handed to that user.
* The container's output is copied into the sandbox's ``stdout``/``stderr`` files; the
  container is removed when the executor exits, is killed, or the agent stops.
* A missing image or a failed ``docker run`` is a :class:`LaunchError` (the agent
  reports TASK_FAILED with REASON_CONTAINER_LAUNCH_FAILED). Images are never pulled:
  unlike a Mesos agent, the embedded one assumes no registry.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

from .containerizer import ContainerSpec, LaunchError

logger = logging.getLogger("ancho.embedded.docker")

SANDBOX = "/mnt/mesos/sandbox"
#: The user the executor image runs as; the sandbox is handed to it.
CONTAINER_UID = 1000
_NETWORKS = {"HOST": "host", "NONE": "none", "BRIDGE": "bridge"}


class DockerContainerizer:
    """Runs DOCKER ContainerInfos with the local Docker engine."""

    def __init__(self) -> None:
        self._client: Any = None
        self._lock = threading.Lock()

    def _docker(self) -> Any:
        with self._lock:
            if self._client is None:
                import docker  # late: only runs that ask for Docker need the engine

                try:
                    self._client = docker.from_env()  # type: ignore[attr-defined]
                    self._client.ping()
                except Exception as exc:
                    self._client = None
                    raise LaunchError(f"the Docker engine is not reachable ({exc})") from None
            return self._client

    def supports(self, container: dict[str, Any] | None) -> bool:
        """ContainerInfo of type DOCKER."""
        return container is not None and container.get("type") == "DOCKER"

    def launch(self, spec: ContainerSpec) -> _DockerContainer:
        """``docker run`` the executor; raise LaunchError when it cannot start."""
        from docker.errors import APIError, ImageNotFound

        assert spec.container is not None
        info = spec.container.get("docker") or {}
        image = info.get("image")
        if not image:
            raise LaunchError("ContainerInfo.docker.image is missing")
        client = self._docker()
        environment = {**_command_environment(spec.command), **spec.environment,
                       "MESOS_SANDBOX": SANDBOX}  # fmt: skip
        user = _container_user()
        _hand_over(spec.directory, user)
        volumes = {str(spec.directory): {"bind": SANDBOX, "mode": "rw"}}
        for volume in spec.container.get("volumes", []):
            host = volume.get("host_path")
            if host:
                mode = "ro" if volume.get("mode", "RW") == "RO" else "rw"
                volumes[host] = {"bind": volume["container_path"], "mode": mode}
        command = None
        if spec.command.get("value"):
            value = spec.command["value"]
            command = ["/bin/sh", "-c", value] if spec.command.get("shell", True) else [value]
            command += [str(a) for a in spec.command.get("arguments", [])[1:]]
        kwargs: dict[str, Any] = {
            "environment": environment,
            "volumes": volumes,
            "network_mode": _NETWORKS.get(str(info.get("network", "HOST")), "host"),
            "labels": spec.labels or {},
            "name": f"mesos-{spec.container_id}",
            "detach": True,
            "working_dir": SANDBOX,
            "user": f"{user[0]}:{user[1]}",
            **_parameters(info.get("parameters", [])),
        }
        if spec.cpus > 0:
            kwargs["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.mem_mb > 0:
            kwargs["mem_limit"] = kwargs["memswap_limit"] = f"{int(spec.mem_mb)}m"
        try:
            # Never pull: the embedded agent runs images this machine has (no registry
            # is assumed reachable); `make image` builds Ancho's.
            client.images.get(image)
        except ImageNotFound:
            raise LaunchError(
                f"image {image!r} not found on this machine (build it with `make image`)"
            ) from None
        except APIError as exc:
            raise LaunchError(f"docker image {image}: {exc.explanation or exc}") from None
        try:
            container = client.containers.run(image, command, **kwargs)
        except ImageNotFound:
            raise LaunchError(f"image {image!r} not found (build it with `make image`)") from None
        except APIError as exc:
            raise LaunchError(f"docker run {image}: {exc.explanation or exc}") from None
        return _DockerContainer(container, spec.directory)


def _container_user() -> tuple[int, int]:
    """The image's user under a root agent; the agent's own user otherwise."""
    if os.geteuid() == 0:
        return CONTAINER_UID, CONTAINER_UID
    return os.getuid(), os.getgid()


def share_with_containers(*paths: Path) -> None:
    """Let containers' user write ``paths`` (created as folders when missing).

    For a root agent that is a ``chown`` to the image's user (root keeps its access);
    otherwise containers run as the agent's user and own nothing new.
    """
    if os.geteuid() != 0:
        return
    for path in paths:
        if not path.exists():
            path.mkdir(parents=True, exist_ok=True)
        os.chown(path, CONTAINER_UID, CONTAINER_UID)


def _parameters(parameters: list[dict[str, Any]]) -> dict[str, Any]:
    """``docker run`` flags from DockerInfo.parameters as docker SDK arguments."""
    kwargs: dict[str, Any] = {}
    for p in parameters:
        key, value = str(p.get("key", "")), str(p.get("value", ""))
        if key == "read-only":
            kwargs["read_only"] = value.lower() in ("true", "1", "")
        elif key in ("cap-drop", "cap-add", "security-opt"):
            kwargs.setdefault(key.replace("-", "_"), []).append(value)
        elif key == "pids-limit":
            kwargs["pids_limit"] = int(value)
        elif key == "user":
            kwargs["user"] = value
        elif key == "tmpfs":
            path, _, options = value.partition(":")
            kwargs.setdefault("tmpfs", {})[path] = options
        else:
            raise LaunchError(f"docker parameter {key!r} is not supported by the embedded agent")
    return kwargs


def _hand_over(directory: Path, user: tuple[int, int]) -> None:
    """Let the container's user write its sandbox."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            os.chown(directory, *user)
    except OSError as exc:
        raise LaunchError(f"cannot prepare the sandbox {directory}: {exc}") from None


def _command_environment(command: dict[str, Any]) -> dict[str, str]:
    variables = command.get("environment", {}).get("variables", [])
    return {str(v["name"]): str(v.get("value", "")) for v in variables}


class _DockerContainer:
    """A running executor container: its wait status, signals, and its logs."""

    def __init__(self, container: Any, directory: Path) -> None:
        self._container = container
        self._directory = directory
        self._logs = threading.Thread(target=self._copy_logs, daemon=True,
                                      name=f"ancho-docker-logs-{container.short_id}")  # fmt: skip
        self._logs.start()

    @property
    def pid(self) -> int:
        with contextlib.suppress(Exception):
            self._container.reload()
            return int(self._container.attrs["State"]["Pid"])
        return -1

    def _copy_logs(self) -> None:
        # One stream each: Docker demultiplexes stdout and stderr for us.
        def copy(name: str, stdout: bool) -> None:
            with contextlib.suppress(Exception), (self._directory / name).open("ab") as fh:
                for chunk in self._container.logs(stream=True, follow=True, stdout=stdout,
                                                  stderr=not stdout):  # fmt: skip
                    fh.write(chunk)
                    fh.flush()

        err = threading.Thread(target=copy, args=("stderr", False), daemon=True)
        err.start()
        copy("stdout", True)
        err.join()

    def wait(self) -> int:
        """The exit as a raw wait status (exit code in the high byte); then remove it."""
        try:
            code = int(self._container.wait().get("StatusCode", -1))
        except Exception:
            code = -1
        self._logs.join(timeout=2)
        with contextlib.suppress(Exception):
            self._container.remove(force=True)
        if code > 128:  # killed by a signal: Docker reports 128 + signal
            return code - 128
        return code << 8 if code >= 0 else signal.SIGKILL

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the container's processes."""
        with contextlib.suppress(Exception):
            self._container.kill(signal=signum)
