"""Confinement of user code: model code, custom summaries and requirement installs.

:func:`confine` applies, in this order, to the calling process and all it starts:

1. :func:`~.process.isolate`: a PID namespace of its own (and a uid of its own when the
   caller is root, or a user namespace when it is not) — the sandbox neither sees nor
   signals other processes;
2. ``PR_SET_NO_NEW_PRIVS``;
3. :func:`~.process.set_limits`: processes, open files, file size;
4. :func:`~.landlock.restrict`: read-only access to the interpreter, the libraries and
   the folders a :class:`Profile` names, read-write access to its scratch folders,
   nothing else (no ``/proc``, no store file, no other sandbox); no signals to and no
   abstract Unix sockets with processes outside; optionally TCP ``connect`` to some
   ports only;
5. :func:`~.seccomp.install`: no sockets (unless allowed), no ptrace, no namespaces,
   no mounts.

A mechanism the machine lacks raises :class:`SandboxUnavailable`, unless the caller
allows a weaker sandbox: then :func:`confine` goes on without it and returns what it
left out, for the run's log. It is never silently weaker.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import landlock, seccomp
from .process import IsolationUnavailable, Limits, isolate, no_new_privs, set_limits

__all__ = ["Limits", "Profile", "SandboxUnavailable", "confine", "system_read_paths"]


class SandboxUnavailable(Exception):
    """A confinement mechanism is missing and a weaker sandbox is not allowed."""


#: Read-only everywhere: shared libraries, the dynamic loader's cache, time zones.
_SYSTEM_READ = ("/usr", "/lib", "/lib64", "/bin", "/etc/ld.so.cache", "/etc/localtime",
                "/sys/fs/cgroup", "/sys/devices/system/cpu",
                "/etc/ssl/certs", "/etc/ca-certificates", "/etc/alternatives")  # fmt: skip
#: Devices any program expects (read and write, both harmless).
_DEVICES = ("/dev/null", "/dev/zero", "/dev/urandom", "/dev/random")


def system_read_paths() -> list[Path]:
    """The interpreter, its standard library and site-packages, and the system's libraries.

    Never the current folder nor a bare ``sys.path`` entry such as a project's root:
    only installation folders, and the folders of the packages that are imported from
    elsewhere (an editable install of Ancho).
    """
    paths = [Path(p) for p in _SYSTEM_READ]
    prefixes = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths += [Path(p) for p in sorted(prefixes)]
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        if path := sysconfig.get_paths().get(name):
            paths.append(Path(path))
    paths.append(Path(os.path.realpath(sys.executable)).parent)
    for module in ("ancho", "executor", "numpy"):
        mod = sys.modules.get(module)
        if mod is not None and getattr(mod, "__file__", None):
            paths.append(Path(mod.__file__).resolve().parent)  # type: ignore[arg-type]
    return paths


@dataclass(slots=True)
class Profile:
    """What a sandbox may use.

    ``read``/``write``: folders besides the system's (:func:`system_read_paths`);
    ``sockets``: whether ``socket(2)`` works at all; ``connect_ports``: with sockets,
    the only TCP ports ``connect`` may reach (``None``: any).
    """

    read: list[Path] = field(default_factory=list)
    write: list[Path] = field(default_factory=list)
    sockets: bool = False
    connect_ports: list[int] | None = None
    limits: Limits = field(default_factory=Limits)


def confine(profile: Profile, *, allow_weaker: bool = False,
            on_fork: Callable[[int], None] | None = None,
            prepare: Callable[[], object] | None = None) -> list[str]:  # fmt: skip
    """Confine this process as ``profile`` says; return the mechanisms left out.

    Forks (see :func:`~.process.isolate`): only the confined child returns. ``on_fork``
    is called in the parent, outside, with the child's pid. ``prepare`` runs in the
    child between isolation and the rest: the place to import what reads the machine
    (numpy reads ``/sys``) or starts threads (a user namespace needs a process with
    one thread, so nothing may start one before).
    """
    missing: list[str] = []

    def attempt(what: str, step: Callable[[], object]) -> None:
        try:
            step()
        except (IsolationUnavailable, landlock.LandlockUnavailable,
                seccomp.SeccompUnavailable, OSError) as exc:  # fmt: skip
            if not allow_weaker:
                raise SandboxUnavailable(f"{what}: {exc}") from None
            missing.append(f"{what} ({exc})")

    attempt("process isolation", lambda: isolate(profile.write, on_fork))
    if prepare is not None:
        prepare()
    attempt("no_new_privs", no_new_privs)
    attempt("resource limits", lambda: set_limits(profile.limits))
    policy = landlock.Policy(
        read=[*system_read_paths(), *profile.read],
        write=[*profile.write, *(Path(d) for d in _DEVICES)],
        connect_ports=profile.connect_ports if profile.sockets else None,
    )
    attempt("landlock", lambda: landlock.restrict(policy))
    attempt("seccomp", lambda: seccomp.install(deny_sockets=not profile.sockets))
    return missing
