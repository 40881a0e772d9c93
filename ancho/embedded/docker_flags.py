"""``docker run`` flags as Docker's SDK takes them: how the embedded Docker containerizer
passes ``DockerInfo.parameters`` through, as Mesos passes each as ``--KEY=VALUE``.

:data:`FLAGS` maps a flag to the SDK's keyword and parses its value as Docker does
(booleans, sizes, Go durations); flags Docker has but the SDK cannot express are in
:data:`UNMAPPABLE`; :func:`apply_parameters` applies them in order (a later one wins).
Any flag that cannot be applied is a :class:`FlagError` naming it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .containerizer import LaunchError


class FlagError(ValueError):
    """A flag's value does not parse (``docker run`` would refuse it)."""


_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40, "p": 2**50}
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9,
                   "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip


def parse_bool(value: str) -> bool:
    """Go's ``strconv.ParseBool``, which Docker's boolean flags use."""
    if value in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if value in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise FlagError(f"strconv.ParseBool: parsing {value!r}: invalid syntax")


def parse_size(value: str) -> int:
    """A size in bytes as Docker reads ``--memory`` (``512m``, ``1g``, ``2GiB``, ``1024``)."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(?:i?b)?", value.strip().lower())
    if not match:
        raise FlagError(f"invalid size: {value!r}")
    return int(float(match[1]) * _UNITS[match[2]])


def parse_duration(value: str) -> int:
    """A Go duration (``30s``, ``1m30s``, ``500ms``) in nanoseconds."""
    parts = re.findall(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        raise FlagError(f"time: invalid duration {value!r}")
    return int(sum(float(n) * _DURATION_UNITS[u] for n, u in parts))


def _int(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise FlagError(f"invalid integer {value!r}") from None


def _pair(value: str, sep: str = "=") -> tuple[str, str]:
    key, found, rest = value.partition(sep)
    if not key or not found:
        raise FlagError(f"expected KEY{sep}VALUE, got {value!r}")
    return key, rest


def _env_entry(value: str) -> dict[str, str]:
    """``KEY=VALUE``; a bare ``KEY`` takes the agent's value (dropped when it has none),
    as the ``docker`` command takes its own environment's."""
    key, found, rest = value.partition("=")
    if found:
        return {key: rest}
    return {key: os.environ[key]} if key in os.environ else {}


def _label_entry(value: str) -> dict[str, str]:
    key, _, rest = value.partition("=")
    return {key: rest}


def _file_entries(parse: Callable[[str], dict[str, str]]) -> Callable[[str], dict[str, str]]:
    """``--env-file``/``--label-file``: a file on the agent, one entry a line."""

    def read(path: str) -> dict[str, str]:
        try:
            lines = Path(path).read_text().splitlines()
        except OSError as exc:
            raise FlagError(f"open {path}: {exc.strerror}") from None
        out: dict[str, str] = {}
        for line in lines:
            if line.strip() and not line.lstrip().startswith("#"):
                out.update(parse(line))
        return out

    return read


def _host(value: str) -> dict[str, str]:
    host, sep, address = value.partition("=") if "=" in value else value.partition(":")
    if not host or not sep:
        raise FlagError(f"invalid argument {value!r} for --add-host: expected HOST:IP")
    return {host: address}


def _throttle(rate: Callable[[str], int]) -> Callable[[str], dict[str, Any]]:
    def parse(value: str) -> dict[str, Any]:
        path, sep, amount = value.rpartition(":")
        if not sep or not path:
            raise FlagError(f"bad format {value!r}: expected PATH:RATE")
        return {"Path": path, "Rate": rate(amount)}

    return parse


def _weight_device(value: str) -> dict[str, Any]:
    path, sep, weight = value.rpartition(":")
    if not sep or not path:
        raise FlagError(f"bad format {value!r}: expected PATH:WEIGHT")
    return {"Path": path, "Weight": _int(weight)}


def _ulimit(value: str) -> Any:
    from docker.types import Ulimit

    name, limits = _pair(value)
    soft, _, hard = limits.partition(":")
    return Ulimit(name=name, soft=_int(soft), hard=_int(hard or soft))


def _restart(value: str) -> dict[str, Any]:
    name, _, count = value.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure"):
        raise FlagError(f"invalid restart policy {value!r}")
    return {"Name": "" if name == "no" else name, "MaximumRetryCount": _int(count or "0")}


def _link(value: str) -> dict[str, str]:
    name, _, alias = value.partition(":")
    return {name: alias or name}


def _tmpfs(value: str) -> dict[str, str]:
    path, _, options = value.partition(":")
    return {path: options}


def _publish(value: str) -> dict[str, Any]:
    spec, _, proto = value.partition("/")
    parts = spec.split(":")
    if any("-" in p for p in parts):
        raise FlagError("port ranges cannot be passed through the Docker SDK")
    port = f"{parts[-1]}/{proto or 'tcp'}"
    if len(parts) == 1:
        return {port: None}
    if len(parts) == 2:
        return {port: _int(parts[0]) if parts[0] else None}
    return {port: (parts[0], _int(parts[1]) if parts[1] else None)}


def _bind(value: str) -> list[str]:
    if ":" not in value:
        raise FlagError("an anonymous volume cannot be passed through the Docker SDK")
    return [value]


def _mount(value: str) -> Any:
    from docker.types import Mount

    fields: dict[str, str] = {}
    for item in value.split(","):
        key, _, val = item.partition("=")
        fields[key.strip().lower()] = val if "=" in item else "true"
    names = {"type": "type", "source": "source", "src": "source", "target": "target",
             "destination": "target", "dst": "target", "readonly": "read_only",
             "ro": "read_only", "consistency": "consistency",
             "bind-propagation": "propagation", "volume-nocopy": "no_copy",
             "tmpfs-size": "tmpfs_size", "tmpfs-mode": "tmpfs_mode"}  # fmt: skip
    args: dict[str, Any] = {"source": None}
    for key, val in fields.items():
        if key not in names:
            raise FlagError(f"mount option {key!r} cannot be passed through the Docker SDK")
        args[names[key]] = val
    for key in ("read_only", "no_copy"):
        if key in args:
            args[key] = parse_bool(args[key])
    if "tmpfs_size" in args:
        args["tmpfs_size"] = parse_size(args["tmpfs_size"])
    if "tmpfs_mode" in args:
        args["tmpfs_mode"] = int(args["tmpfs_mode"], 8)
    if "target" not in args:
        raise FlagError("mount needs a target")
    return Mount(**args)


def _gpus(value: str) -> Any:
    from docker.types import DeviceRequest

    count = -1 if value == "all" else _int(value.removeprefix("count="))
    return DeviceRequest(count=count, capabilities=[["gpu"]])


def _nano_cpus(value: str) -> int:
    try:
        return int(float(value) * 1e9)
    except ValueError:
        raise FlagError(f"invalid argument {value!r} for --cpus") from None


def _swap(value: str) -> int:
    return -1 if value.strip() == "-1" else parse_size(value)


@dataclass(slots=True, frozen=True)
class Flag:
    """How one ``docker run`` flag becomes an SDK argument.

    ``how``: ``set`` (the last one wins), ``append`` or ``extend`` (a list), ``update``
    (a dict).
    """

    kwarg: str
    parse: Callable[[str], Any] = str
    how: str = "set"


_S, _A, _U = "set", "append", "update"

#: ``docker run`` flags (Docker 20.10) and their ``docker`` SDK arguments.
FLAGS: dict[str, Flag] = {
    "add-host": Flag("extra_hosts", _host, _U),
    "blkio-weight": Flag("blkio_weight", _int),
    "blkio-weight-device": Flag("blkio_weight_device", _weight_device, _A),
    "cap-add": Flag("cap_add", str, _A),
    "cap-drop": Flag("cap_drop", str, _A),
    "cgroup-parent": Flag("cgroup_parent"),
    "cgroupns": Flag("cgroupns"),
    "cpu-count": Flag("cpu_count", _int),
    "cpu-percent": Flag("cpu_percent", _int),
    "cpu-period": Flag("cpu_period", _int),
    "cpu-quota": Flag("cpu_quota", _int),
    "cpu-rt-period": Flag("cpu_rt_period", _int),
    "cpu-rt-runtime": Flag("cpu_rt_runtime", _int),
    "cpu-shares": Flag("cpu_shares", _int),
    "cpus": Flag("nano_cpus", _nano_cpus),
    "cpuset-cpus": Flag("cpuset_cpus"),
    "cpuset-mems": Flag("cpuset_mems"),
    "device": Flag("devices", str, _A),
    "device-cgroup-rule": Flag("device_cgroup_rules", str, _A),
    "device-read-bps": Flag("device_read_bps", _throttle(parse_size), _A),
    "device-read-iops": Flag("device_read_iops", _throttle(_int), _A),
    "device-write-bps": Flag("device_write_bps", _throttle(parse_size), _A),
    "device-write-iops": Flag("device_write_iops", _throttle(_int), _A),
    "dns": Flag("dns", str, _A),
    "dns-opt": Flag("dns_opt", str, _A),
    "dns-option": Flag("dns_opt", str, _A),
    "dns-search": Flag("dns_search", str, _A),
    "domainname": Flag("domainname"),
    "entrypoint": Flag("entrypoint"),
    "env": Flag("environment", _env_entry, _U),
    "env-file": Flag("environment", _file_entries(_env_entry), _U),
    "gpus": Flag("device_requests", _gpus, _A),
    "group-add": Flag("group_add", str, _A),
    "hostname": Flag("hostname"),
    "init": Flag("init", parse_bool),
    "interactive": Flag("stdin_open", parse_bool),
    "ipc": Flag("ipc_mode"),
    "isolation": Flag("isolation"),
    "kernel-memory": Flag("kernel_memory", parse_size),
    "label": Flag("labels", _label_entry, _U),
    "label-file": Flag("labels", _file_entries(_label_entry), _U),
    "link": Flag("links", _link, _U),
    "mac-address": Flag("mac_address"),
    "memory": Flag("mem_limit", parse_size),
    "memory-reservation": Flag("mem_reservation", parse_size),
    "memory-swap": Flag("memswap_limit", _swap),
    "memory-swappiness": Flag("mem_swappiness", _int),
    "mount": Flag("mounts", _mount, _A),
    "net": Flag("network_mode"),
    "network": Flag("network_mode"),
    "oom-kill-disable": Flag("oom_kill_disable", parse_bool),
    "oom-score-adj": Flag("oom_score_adj", _int),
    "pid": Flag("pid_mode"),
    "pids-limit": Flag("pids_limit", _int),
    "platform": Flag("platform"),
    "privileged": Flag("privileged", parse_bool),
    "publish": Flag("ports", _publish, _U),
    "publish-all": Flag("publish_all_ports", parse_bool),
    "read-only": Flag("read_only", parse_bool),
    "restart": Flag("restart_policy", _restart),
    "runtime": Flag("runtime"),
    "security-opt": Flag("security_opt", str, _A),
    "shm-size": Flag("shm_size", parse_size),
    "stop-signal": Flag("stop_signal"),
    "storage-opt": Flag("storage_opt", lambda v: dict([_pair(v)]), _U),
    "sysctl": Flag("sysctls", lambda v: dict([_pair(v)]), _U),
    "tmpfs": Flag("tmpfs", _tmpfs, _U),
    "tty": Flag("tty", parse_bool),
    "ulimit": Flag("ulimits", _ulimit, _A),
    "user": Flag("user"),
    "userns": Flag("userns_mode"),
    "uts": Flag("uts_mode"),
    "volume": Flag("volumes", _bind, "extend"),
    "volume-driver": Flag("volume_driver"),
    "volumes-from": Flag("volumes_from", str, _A),
    "workdir": Flag("working_dir"),
}

#: Health checks: ``docker run`` spreads one over several flags.
_HEALTH = {"health-cmd": "test", "health-interval": "interval", "health-retries": "retries",
           "health-timeout": "timeout", "health-start-period": "start_period",
           "no-healthcheck": "test"}  # fmt: skip
_LOG = ("log-driver", "log-opt")

#: ``docker run`` flags the ``docker`` SDK cannot pass (or that would take the container
#: out of the agent's hands): a launch that names one fails, saying so.
UNMAPPABLE = frozenset({
    "annotation", "attach", "cidfile", "detach", "detach-keys", "disable-content-trust",
    "expose", "health-start-interval", "help", "ip", "ip6", "link-local-ip", "name",
    "network-alias", "pull", "quiet", "rm", "sig-proxy", "stop-timeout", "io-maxbandwidth",
    "io-maxiops",
})  # fmt: skip


def apply_parameters(kwargs: dict[str, Any], parameters: list[dict[str, Any]]) -> None:
    """Apply DockerInfo.parameters, in order, onto ``containers.run`` arguments."""
    health: dict[str, Any] = {}
    log: dict[str, Any] = {}
    for p in parameters:
        key, value = str(p.get("key", "")), str(p.get("value", ""))
        try:
            if key in _HEALTH:
                _health(health, key, value)
            elif key in _LOG:
                if key == "log-driver":
                    log["type"] = value
                else:
                    log.setdefault("config", {}).update(dict([_pair(value)]))
            elif key in FLAGS:
                flag = FLAGS[key]
                parsed = flag.parse(value)
                if flag.how == "set":
                    kwargs[flag.kwarg] = parsed
                elif flag.how == "append":
                    kwargs.setdefault(flag.kwarg, []).append(parsed)
                elif flag.how == "extend":
                    kwargs.setdefault(flag.kwarg, []).extend(parsed)
                else:
                    kwargs[flag.kwarg] = {**(kwargs.get(flag.kwarg) or {}), **parsed}
            elif key in UNMAPPABLE:
                raise LaunchError(
                    f"docker parameter '--{key}={value}' cannot be passed to the Docker engine"
                    " by the embedded agent"
                )
            else:
                raise LaunchError(f"docker run: unknown flag: --{key}")
        except FlagError as exc:
            raise LaunchError(
                f"docker run: invalid argument {value!r} for --{key}: {exc}"
            ) from None
    if health:
        kwargs["healthcheck"] = health
    if log:
        kwargs["log_config"] = {"type": log.get("type", ""), "config": log.get("config", {})}


def _health(health: dict[str, Any], key: str, value: str) -> None:
    if key == "no-healthcheck":
        if parse_bool(value):
            health["test"] = ["NONE"]
    elif key == "health-cmd":
        health["test"] = ["CMD-SHELL", value]
    elif key == "health-retries":
        health["retries"] = _int(value)
    else:
        health[_HEALTH[key]] = parse_duration(value)
