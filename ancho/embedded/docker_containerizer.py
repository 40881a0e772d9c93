"""The Docker containerizer of the embedded agent: what Mesos 1.11's Docker containerizer
does with an ExecutorInfo whose ContainerInfo has type DOCKER, through the ``docker`` SDK.

As Mesos does (``src/slave/paths.cpp``, ``src/docker/docker.cpp``,
``src/slave/containerizer/docker.cpp``):

* **The sandbox** belongs to ``CommandInfo.user``, else ``FrameworkInfo.user``
  (``ContainerSpec.user``), resolved on this machine; mode 0750. A user this machine
  does not know fails the launch ("No such user"). It is mounted at
  ``/mnt/mesos/sandbox`` (``MESOS_SANDBOX``); ``MESOS_CONTAINER_NAME`` is set too.
* **No ``--user``** and no working directory: the container runs as its image's user,
  in its image's folder, unless a ``docker.parameters`` entry says otherwise.
* **Resources**: ``--cpu-shares`` = cpus * 1024 (at least 2); a CFS quota
  (``--cpu-quota`` = cpus * 100 ms, at least 1 ms) only when the agent enables it
  (``cfs_quota``, Mesos' ``--cgroups_enable_cfs``); ``--memory`` = mem (at least
  32 MB) and nothing for swap. From the executor's resources plus its first task's.
* **``docker.parameters``** are ``docker run --KEY=VALUE`` flags, in order, after
  Mesos' own (so a later one wins, as on Docker's command line). :mod:`.docker_flags` maps
  ``docker run``'s flags to the SDK's arguments; a flag the SDK cannot express fails
  the launch naming it, an unknown one fails as ``docker run`` does ("unknown flag").
  ``net``/``network`` choose the network, as in Mesos.
* **Images**: one this machine lacks (or ``force_pull_image``) is pulled first, for at
  most ``pull_timeout_s``; a pull that fails or times out fails the launch with its
  reason (the agent reports REASON_CONTAINER_LAUNCH_FAILED).
* ``docker.network`` HOST (the default) shares the agent's network; NONE, BRIDGE and
  USER (the one ``network_infos`` name) map to Docker's; ``ContainerInfo.hostname`` is
  refused with the host network; ``ContainerInfo.volumes`` are bind mounts
  (``RO``/``RW``), a relative host path taken from the sandbox, a relative container
  path put under it; ``port_mappings`` need a bridge or user network.
* **Shell** commands run as ``/bin/sh -c VALUE`` (the entrypoint replaced); otherwise
  the image's entrypoint gets ``VALUE`` (if any) then every argument.

Not as Mesos: the container's output is copied into the sandbox's ``stdout``/``stderr``
by following its logs; the container is removed when the executor exits, is killed, or
the agent stops (Mesos waits ``--docker_remove_delay``); labels name the framework,
executor and container for ``docker ps``.

Ancho's executor image runs as root with only ``CAP_SETUID``/``CAP_SETGID`` and
becomes the sandbox's owner first (:mod:`ancho.sandbox.identity`);
:func:`share_with_containers` gives the folders they share (an SQLite store, the
agent's cache) to that same identity.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import pwd
import signal
import threading
from pathlib import Path
from typing import Any

from ancho.sandbox.identity import executor_identity

from .containerizer import ContainerSpec, LaunchError
from .docker_flags import apply_parameters

logger = logging.getLogger("ancho.embedded.docker")

SANDBOX = "/mnt/mesos/sandbox"
CPU_SHARES_PER_CPU = 1024
MIN_CPU_SHARES = 2
CPU_CFS_PERIOD_US = 100_000
MIN_CPU_CFS_QUOTA_US = 1_000
MIN_MEMORY_BYTES = 32 * 2**20
#: Mesos' default ``--executor_registration_timeout``, which a pull counts against.
PULL_TIMEOUT_S = 60.0
_NETWORKS = {"HOST": "host", "NONE": "none", "BRIDGE": "bridge"}


class DockerContainerizer:
    """Runs DOCKER ContainerInfos with the local Docker engine.

    ``cfs_quota``: also cap CPU time with a CFS quota (Mesos' ``--cgroups_enable_cfs``);
    ``pull_timeout_s``: how long a missing image may take to pull.
    """

    def __init__(self, cfs_quota: bool = False, pull_timeout_s: float = PULL_TIMEOUT_S) -> None:
        self.cfs_quota = cfs_quota
        self.pull_timeout_s = pull_timeout_s
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
        from docker.errors import APIError, DockerException, ImageNotFound

        assert spec.container is not None
        info = spec.container.get("docker") or {}
        image = info.get("image")
        if not image:
            raise LaunchError("ContainerInfo.docker.image is missing")
        prepare_sandbox(spec.directory, spec.command.get("user") or spec.user)
        kwargs = self.run_arguments(spec)
        client = self._docker()
        self._ensure_image(client, str(image), bool(info.get("force_pull_image")))
        command = kwargs.pop("command")
        try:
            container = client.containers.run(str(image), command, **kwargs)
        except (DockerException, TypeError) as exc:  # TypeError: arguments the SDK refuses
            # run() is create + start: a container that was created but would not
            # start must not outlive the launch.
            with contextlib.suppress(Exception):
                client.containers.get(kwargs["name"]).remove(force=True)
            if isinstance(exc, ImageNotFound):
                raise LaunchError(f"Failed to run docker container: {exc.explanation}") from None
            if isinstance(exc, APIError):
                raise LaunchError(f"docker run {image}: {exc.explanation or exc}") from None
            raise LaunchError(f"docker run {image}: {exc}") from None
        return _DockerContainer(container, spec.directory)

    def run_arguments(self, spec: ContainerSpec) -> dict[str, Any]:
        """The ``containers.run`` arguments (``command`` included) for ``spec``."""
        assert spec.container is not None
        container = spec.container
        info = container.get("docker") or {}
        name = f"mesos-{spec.container_id}"
        environment = {**_command_environment(spec.command), **spec.environment,
                       "MESOS_SANDBOX": SANDBOX, "MESOS_CONTAINER_NAME": name}  # fmt: skip
        kwargs: dict[str, Any] = {
            "environment": environment,
            "volumes": [*_volumes(container, spec.directory), f"{spec.directory}:{SANDBOX}"],
            "network_mode": _network(container, info),
            "labels": dict(spec.labels or {}),
            "name": name,
            "detach": True,
        }
        if info.get("privileged"):
            kwargs["privileged"] = True
        if container.get("hostname"):
            if kwargs["network_mode"] == "host":
                raise LaunchError("Unable to set hostname with host network mode")
            kwargs["hostname"] = str(container["hostname"])
        if info.get("port_mappings"):
            if kwargs["network_mode"] in ("host", "none"):
                raise LaunchError(
                    "Port mappings are only supported for bridge and user-defined networks"
                )
            kwargs["ports"] = {
                f"{m['container_port']}/{str(m.get('protocol', 'tcp')).lower()}": m["host_port"]
                for m in info["port_mappings"]
            }
        if spec.cpus > 0:
            kwargs["cpu_shares"] = max(int(CPU_SHARES_PER_CPU * spec.cpus), MIN_CPU_SHARES)
            if self.cfs_quota:
                quota = max(int(CPU_CFS_PERIOD_US * spec.cpus), MIN_CPU_CFS_QUOTA_US)
                kwargs["cpu_quota"] = quota
        if spec.mem_mb > 0:
            kwargs["mem_limit"] = max(int(spec.mem_mb) * 2**20, MIN_MEMORY_BYTES)
        if spec.command.get("shell", True):
            value = spec.command.get("value")
            if not value:
                raise LaunchError("Shell specified but no command value provided")
            kwargs["entrypoint"] = "/bin/sh"
            kwargs["command"] = ["-c", str(value)]
        else:
            command = [str(spec.command["value"])] if spec.command.get("value") else []
            command += [str(a) for a in spec.command.get("arguments", [])]
            kwargs["command"] = command or None
        apply_parameters(kwargs, info.get("parameters", []))
        return kwargs

    def _ensure_image(self, client: Any, image: str, force: bool) -> None:
        """Pull ``image`` when missing (or forced), within ``pull_timeout_s``."""
        from docker.errors import APIError, ImageNotFound

        reference = _with_tag(image)
        if not force:
            try:
                client.images.get(reference)
                return
            except ImageNotFound:
                pass
            except APIError as exc:
                raise LaunchError(f"docker inspect {reference}: {exc.explanation or exc}") from None
        self._pull(reference)

    def _pull(self, reference: str) -> None:
        import docker

        outcome: list[BaseException | None] = []
        puller = docker.from_env(timeout=max(1, int(self.pull_timeout_s)))  # type: ignore[attr-defined]

        def pull() -> None:
            repository, tag = reference, None
            if "@" not in reference.rsplit("/", 1)[-1]:
                repository, _, tag = reference.rpartition(":")
            try:
                puller.images.pull(repository, tag=tag)
                outcome.append(None)
            except BaseException as exc:  # reported by the launching thread
                outcome.append(exc)

        thread = threading.Thread(target=pull, daemon=True, name=f"ancho-docker-pull-{reference}")
        thread.start()
        thread.join(self.pull_timeout_s)
        failure = f"Failed to run 'docker pull {reference}'"
        if thread.is_alive() or not outcome:
            with contextlib.suppress(Exception):
                puller.close()  # the engine gives up the pull with our connection
            raise LaunchError(f"{failure}: timed out after {self.pull_timeout_s:g} s")
        puller.close()
        error = outcome[0]
        if error is not None:
            reason = getattr(error, "explanation", None) or str(error) or type(error).__name__
            raise LaunchError(f"{failure}: {reason}")
        logger.info("pulled %s", reference)


def _with_tag(image: str) -> str:
    """``image`` with ``:latest`` when it names no tag (nor digest), as Mesos pulls it."""
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last or "@" in last else f"{image}:latest"


def _user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise LaunchError(f"No such user '{name}'") from None


def prepare_sandbox(directory: Path, user: str | None) -> None:
    """Create the sandbox 0750 and give it to ``user``, as a Mesos agent does."""
    try:
        entry = _user(user) if user else None
        directory.mkdir(parents=True, exist_ok=True)
        directory.chmod(0o750)
        if entry is not None:
            try:
                os.chown(directory, entry.pw_uid, entry.pw_gid)
            except OSError as exc:
                raise LaunchError(exc.strerror or str(exc)) from None
    except (LaunchError, OSError) as exc:
        why = f"Failed to chown directory to '{user}': {exc}" if user else str(exc)
        raise LaunchError(f"Failed to create executor directory '{directory}': {why}") from None


def share_with_containers(*paths: Path, user: str | None = None) -> None:
    """Let Ancho's Docker executors write ``paths`` (created as folders when missing).

    Those executors become their sandbox's owner, ``user`` (default: this process'
    user, which the scheduler registers as FrameworkInfo.user), or the image's user
    when that is root (:func:`ancho.sandbox.identity.executor_identity`). For a root
    agent that is a ``chown`` to that identity (root keeps its access); an agent that
    is not root runs them as its own user, who owns these already.
    """
    if os.geteuid() != 0:
        return
    entry = _user(user or getpass.getuser())
    who = executor_identity(entry.pw_uid, entry.pw_gid)
    for path in paths:
        if not path.exists():
            path.mkdir(parents=True, exist_ok=True)
        os.chown(path, who.uid, who.gid)


def _network(container: dict[str, Any], info: dict[str, Any]) -> str:
    network = str(info.get("network", "HOST"))
    if network == "USER":
        infos = container.get("network_infos") or []
        if len(infos) != 1 or not infos[0].get("name"):
            raise LaunchError("A USER network needs exactly one named NetworkInfo")
        return str(infos[0]["name"])
    if network not in _NETWORKS:
        raise LaunchError(f"Unsupported Network mode: {network}")
    return _NETWORKS[network]


def _volumes(container: dict[str, Any], sandbox: Path) -> list[str]:
    """ContainerInfo.volumes as ``host:container:mode`` binds."""
    binds = []
    for volume in container.get("volumes", []):
        host, target = volume.get("host_path"), str(volume.get("container_path", ""))
        if not host:
            raise LaunchError("Host path or volume source is required")
        if not os.path.isabs(host) and not os.path.isabs(target):
            raise LaunchError(f"Both host_path '{host}' and container_path '{target}' "
                              "of a volume are relative")  # fmt: skip
        source = host if os.path.isabs(host) else str(sandbox / host)
        target = target if os.path.isabs(target) else f"{SANDBOX}/{target}"
        mode = "ro" if volume.get("mode", "RW") == "RO" else "rw"
        binds.append(f"{source}:{target}:{mode}")
    return binds


def _command_environment(command: dict[str, Any]) -> dict[str, str]:
    variables = command.get("environment", {}).get("variables", [])
    return {str(v["name"]): str(v.get("value", "")) for v in variables}


# ------------------------------------------------------------- docker run flags
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
