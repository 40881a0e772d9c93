"""``python -m ancho.confined SETTINGS -- PROGRAM...``: start a program inside the sandbox.

User code that runs outside ``simulate`` — pip building a model's requirements, a run's
custom ``summarize`` — runs as a program this launcher starts: it confines itself
(:func:`ancho.sandbox.confine`, which forks: the launcher's own pid stays outside as the
reaper), then replaces itself with ``PROGRAM``, which inherits every restriction. The
program therefore starts as a fresh interpreter that never held anything of the caller's.

:class:`Confinement` (JSON in ``SETTINGS``) adds two things to the sandbox's profile:

* ``private_network``: the program gets a network namespace of its own, with only a
  loopback interface, so it can listen and connect on its own loopback (Spark does) but
  reaches no service of the machine's (Cassandra, ZooKeeper, the Mesos agent, Ancho's
  API) and nothing beyond;
* a root caller's sandbox keeps ``CAP_DAC_READ_SEARCH`` across ``execve`` (as an ambient
  capability): the sandbox's uid has no rights of its own on the interpreter's files
  wherever the operator installed them (e.g. under ``/root``), and without this the
  program — and every interpreter or JVM it starts — would lose the capability that
  lets the confined process read them. Landlock still decides what may be read, and
  seccomp still refuses ``open_by_handle_at``, the one call the capability would open.

The caller's environment is the program's: start the launcher with only what the
program needs. ``ANCHO_SANDBOX_ALLOW_WEAKER=1`` in it allows a weaker sandbox (the
mechanisms left out are printed on stderr as ``ancho sandbox: weaker: …``); otherwise a
missing mechanism ends the launcher with :data:`EXIT_SANDBOX_UNAVAILABLE` and the reason
on stderr as ``ancho sandbox: unavailable: …``.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import socket
import struct
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .sandbox.process import (
    CAP_DAC_READ_SEARCH,
    CAPABILITY_VERSION_3,
    CLONE_NEWUSER,
    PR_CAP_AMBIENT,
)

#: The launcher's exit status when the sandbox cannot be set up (sysexits' EX_OSERR).
EXIT_SANDBOX_UNAVAILABLE = 71
ALLOW_WEAKER = "ANCHO_SANDBOX_ALLOW_WEAKER"
UNAVAILABLE_PREFIX = "ancho sandbox: unavailable: "
WEAKER_PREFIX = "ancho sandbox: weaker: "

_CLONE_NEWNET = 0x40000000
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_PR_CAP_AMBIENT_RAISE = 2

_libc = ctypes.CDLL(None, use_errno=True)


def weaker_allowed(environ: Mapping[str, str]) -> bool:
    """Whether the operator allows a weaker sandbox (``ANCHO_SANDBOX_ALLOW_WEAKER``)."""
    return environ.get(ALLOW_WEAKER, "").lower() in ("1", "true")


@dataclass(slots=True)
class Confinement:
    """What the program may use (see :class:`ancho.sandbox.Profile`), plus its network."""

    read: list[str] = field(default_factory=list)
    write: list[str] = field(default_factory=list)
    sockets: bool = False
    connect_ports: list[int] | None = None
    private_network: bool = False
    processes: int = 256
    open_files: int = 1024
    file_size_mb: int = 1024

    def command(self, program: list[str]) -> list[str]:
        """The command line that runs ``program`` (an absolute executable first) confined."""
        settings = json.dumps(asdict(self), separators=(",", ":"))
        return [sys.executable, "-m", "ancho.confined", settings, "--", *program]


class _Unavailable(Exception):
    pass


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        raise _Unavailable(f"unshare failed: {os.strerror(ctypes.get_errno())}")


def private_network() -> None:
    """Move this process into a new network namespace and bring its loopback up."""
    if os.geteuid() == 0:
        _unshare(_CLONE_NEWNET)
    else:  # a user namespace of our own first, which owns the network namespace
        uid, gid = os.getuid(), os.getgid()
        _unshare(CLONE_NEWUSER | _CLONE_NEWNET)
        try:
            Path("/proc/self/setgroups").write_text("deny")
            Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
            Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
        except OSError as exc:
            raise _Unavailable(f"cannot map ids: {exc}") from None
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(sock, _SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | _IFF_UP))


def keep_read_search_across_exec() -> None:
    """Make ``CAP_DAC_READ_SEARCH``, if this process holds it, survive ``execve``.

    Raising the capability into the inheritable and ambient sets needs no privilege
    beyond holding it in the permitted set.
    """
    header = struct.pack("Ii", CAPABILITY_VERSION_3, 0)
    data = ctypes.create_string_buffer(24)
    if _libc.capget(header, data) != 0:
        return
    effective, permitted, inheritable, *high = struct.unpack("6I", data.raw)
    bit = 1 << CAP_DAC_READ_SEARCH
    if not permitted & bit:
        return  # an unprivileged sandbox: nothing to keep
    raised = struct.pack("6I", effective, permitted, inheritable | bit, *high)
    _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                            ctypes.c_ulong]  # fmt: skip
    # Best effort: without it the program still runs where its files are world-readable.
    if _libc.capset(header, raised) == 0:
        _libc.prctl(PR_CAP_AMBIENT, _PR_CAP_AMBIENT_RAISE, CAP_DAC_READ_SEARCH, 0, 0)


def main() -> None:
    """Entry point: confine, then ``execv`` the program."""
    from .sandbox import Limits, Profile, SandboxUnavailable, confine
    from .sandbox.process import die_with_parent

    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        sys.exit("usage: python -m ancho.confined SETTINGS -- PROGRAM [ARGS...]")
    settings = Confinement(**json.loads(args[0]))
    program = args[2:]
    allow_weaker = weaker_allowed(os.environ)
    os.environ.pop(ALLOW_WEAKER, None)
    die_with_parent()  # the reaper goes when its caller does, and the sandbox with it
    weaker: list[str] = []
    try:
        if settings.private_network:
            try:
                private_network()
            except (_Unavailable, OSError) as exc:
                if not allow_weaker:
                    raise SandboxUnavailable(f"private network: {exc}") from None
                weaker.append(f"private network ({exc})")
        profile = Profile(
            read=[Path(p) for p in settings.read],
            write=[Path(p) for p in settings.write],
            sockets=settings.sockets,
            connect_ports=settings.connect_ports,
            limits=Limits(settings.processes, settings.open_files, settings.file_size_mb),
        )
        weaker += confine(profile, allow_weaker=allow_weaker)
        keep_read_search_across_exec()
    except (SandboxUnavailable, _Unavailable) as exc:
        print(UNAVAILABLE_PREFIX + str(exc), file=sys.stderr, flush=True)
        os._exit(EXIT_SANDBOX_UNAVAILABLE)
    for what in weaker:
        print(WEAKER_PREFIX + what, file=sys.stderr, flush=True)
    try:
        os.execv(program[0], program)
    except OSError as exc:
        print(f"ancho sandbox: cannot start {program[0]}: {exc}", file=sys.stderr, flush=True)
        os._exit(127)


if __name__ == "__main__":
    main()
