"""Process-level confinement: privileges, namespaces, identity and resource limits.

:func:`isolate` puts the calling process' future into a PID namespace of its own: it
forks, the parent stays outside as a plain reaper (it waits and exits as its child
did), and only the child returns, as PID 1 of a namespace where it sees and can
signal nothing but its own descendants. When this namespace's PID 1 dies, the kernel
kills everything left in it.

* A root caller (the agent runs executors as root) creates the PID namespace with its
  own ``CAP_SYS_ADMIN``; the child then becomes a user of its own (a uid and gid
  derived from the outer process' pid, ``SANDBOX_UID_BASE + pid % SANDBOX_UID_SPAN``),
  keeping only ``CAP_DAC_READ_SEARCH`` so it can still read the interpreter wherever
  the operator installed it (Landlock decides what it may read). Distinct uids keep
  model processes from signalling one another and give each its own process count.
* An unprivileged caller (a container's user) creates a user namespace first, mapping
  its own uid and gid only, and drops every capability the new namespace gave it.

:func:`set_limits` caps processes (a fork bomb gets ``EAGAIN``), open files and the
size of any file written (``EFBIG``: Python ignores ``SIGXFSZ``).
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_KEEPCAPS = 8
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CAP_DAC_READ_SEARCH = 2
CAPABILITY_VERSION_3 = 0x20080522

SANDBOX_UID_BASE = 200_000
SANDBOX_UID_SPAN = 60_000

_libc = ctypes.CDLL(None, use_errno=True)


class IsolationUnavailable(Exception):
    """The kernel refused a namespace, identity or privilege change."""


def _prctl(option: int, arg: int, arg3: int = 0) -> None:
    _libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                            ctypes.c_ulong]  # fmt: skip
    if _libc.prctl(option, arg, arg3, 0, 0) != 0:
        err = ctypes.get_errno()
        raise IsolationUnavailable(f"prctl({option}) failed: {os.strerror(err)}")


def no_new_privs() -> None:
    """Nothing this process executes can gain privileges (set-uid, file capabilities)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)


def die_with_parent() -> None:
    """Get SIGKILL when the parent dies, even in the middle of a long sequence."""
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def not_dumpable() -> None:
    """No process of the same user may ptrace this one or read its memory or environ."""
    _prctl(PR_SET_DUMPABLE, 0)


def _capset(keep: int) -> None:
    """Set permitted and effective capabilities to the ``keep`` mask (inheritable: none)."""
    header = struct.pack("Ii", CAPABILITY_VERSION_3, 0)
    low, high = keep & 0xFFFFFFFF, keep >> 32
    data = struct.pack("6I", low, low, 0, high, high, 0)
    if _libc.capset(header, data) != 0:
        err = ctypes.get_errno()
        raise IsolationUnavailable(f"capset failed: {os.strerror(err)}")
    _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)


def _unshare(flags: int) -> None:
    if _libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise IsolationUnavailable(f"unshare failed: {os.strerror(err)}")


def _map_own_ids(uid: int, gid: int) -> None:
    """Map this process' ids (taken before unsharing: unmapped, they read as 65534)."""
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")


def sandbox_uid(pid: int) -> int:
    """The uid a root caller's sandbox becomes."""
    return SANDBOX_UID_BASE + pid % SANDBOX_UID_SPAN


@dataclass(slots=True, frozen=True)
class Isolated:
    """What :func:`isolate` did, for the child that returns from it."""

    outer_pid: int  # the reaper outside, as the rest of the machine sees the sandbox
    uid: int  # the uid the sandbox runs as


def isolate(writable: list[Path], on_fork: object = None) -> Isolated:
    """Fork into a new PID namespace; return in the child only (see the module docstring).

    ``writable`` folders are handed to the sandbox's uid when it changes. ``on_fork``,
    if given, is called in the parent with the child's pid (as seen from outside)
    before it starts waiting: a way to tell the executor which process to watch.
    """
    outer = os.getpid()
    root = os.geteuid() == 0
    uid = sandbox_uid(outer) if root else os.getuid()
    if root:
        _unshare(CLONE_NEWPID)
        for path in writable:
            os.chown(path, uid, uid)
    else:
        gid = os.getgid()
        _unshare(CLONE_NEWUSER | CLONE_NEWPID)
        _map_own_ids(uid, gid)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_r)
        _reap(pid, ready_w, on_fork)
    os.close(ready_w)
    os.read(ready_r, 1)  # wait until the parent has told whoever needs to know
    os.close(ready_r)
    if root:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        _prctl(PR_SET_KEEPCAPS, 1)
        os.setresuid(uid, uid, uid)
        _capset(1 << CAP_DAC_READ_SEARCH)
    else:
        _capset(0)
    die_with_parent()  # after the uid change, which clears it
    return Isolated(outer, uid)


def _reap(pid: int, ready: int, on_fork: object) -> NoReturn:
    """The outer process: announce the child, wait for it, and exit as it did.

    It never returns, and once the child is announced it holds no descriptor but the
    standard ones, so nothing it does can reach whoever talks to the child.
    """
    status = -1
    try:
        if callable(on_fork):
            on_fork(pid)
        os.write(ready, b"1")
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))
        _, status = os.waitpid(pid, 0)
        if os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig not in (signal.SIGKILL, signal.SIGSTOP):
                signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
    finally:
        os._exit(os.waitstatus_to_exitcode(status) if status >= 0 and os.WIFEXITED(status)
                 else 70)  # fmt: skip


@dataclass(slots=True, frozen=True)
class Limits:
    """Resource limits of a sandbox (soft = hard: the sandbox cannot raise them)."""

    processes: int = 256
    open_files: int = 1024
    file_size_mb: int = 1024


def set_limits(limits: Limits) -> None:
    """Apply ``limits`` to this process and everything it starts."""
    for which, value in (
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_FSIZE, limits.file_size_mb * 2**20),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(which, (value, value))
