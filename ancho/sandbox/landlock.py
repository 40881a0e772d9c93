"""Landlock: a process takes away its own access to files, TCP ports and other processes.

Landlock (Linux 5.13+) is an unprivileged LSM: a process builds a *ruleset* naming the
kinds of access it wants to restrict, adds rules that grant some of them beneath given
folders (or to given TCP ports), and applies it to itself. From then on it, and
everything it starts, can use those kinds of access only where a rule grants them;
nothing can lift a ruleset again. :func:`restrict` wraps the three syscalls
(``landlock_create_ruleset``, ``landlock_add_rule``, ``landlock_restrict_self``) through
ctypes, no library needed.

What each ABI version adds, and what :func:`restrict` uses of it:

* 1: file access (execute, read, write, list, create and remove entries);
* 2: ``REFER`` (renaming or linking a file into another folder);
* 3: ``TRUNCATE``;
* 4: TCP ``bind``/``connect`` by port;
* 5: ``IOCTL_DEV`` (ioctl on device files);
* 6: *scoping*: no signals to, and no abstract Unix socket connections with, processes
  outside the domain.

:func:`restrict` handles every access right the running kernel knows, so a right the
caller does not grant is denied, not just left alone.
"""

from __future__ import annotations

import ctypes
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

# The syscall numbers are the same on x86-64 and arm64 (the generic table).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1
_RULE_NET_PORT = 2

# Filesystem access rights, by the ABI version that introduced them.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
_FS_V1 = (1 << 13) - 1  # EXECUTE … MAKE_SYM
REFER = 1 << 13  # ABI 2
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5
#: Rights that apply to a file itself (the others only to folders).
_FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

READ_ONLY = EXECUTE | READ_FILE | READ_DIR

# Network rights (ABI 4) and scopes (ABI 6).
BIND_TCP = 1 << 0
CONNECT_TCP = 1 << 1
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1


class LandlockUnavailable(Exception):
    """The kernel lacks Landlock, or the version a restriction needs."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),
        ("scoped", ctypes.c_uint64),
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # the kernel's struct is __attribute__((packed))
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


class _NetPortAttr(ctypes.Structure):
    _fields_ = [("allowed_access", ctypes.c_uint64), ("port", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


def abi_version() -> int:
    """The kernel's Landlock ABI version (0: none, or disabled at boot)."""
    version = _libc.syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                            ctypes.c_uint32(_CREATE_RULESET_VERSION))  # fmt: skip
    return max(int(version), 0)


def _fs_rights(abi: int) -> int:
    rights = _FS_V1
    if abi >= 2:
        rights |= REFER
    if abi >= 3:
        rights |= TRUNCATE
    if abi >= 5:
        rights |= IOCTL_DEV
    return rights


@dataclass(slots=True)
class Policy:
    """What a confined process may still do once :func:`restrict` applies this.

    ``read`` folders (and files) may be read, listed and executed from; ``write``
    folders get every file right beneath them. ``connect_ports``: ``None`` leaves TCP
    alone (seccomp or the network decide); a list allows ``connect`` to those ports
    only and ``bind`` nowhere. ``scope`` cuts signals and abstract Unix sockets to
    processes outside the sandbox.
    """

    read: list[Path] = field(default_factory=list)
    write: list[Path] = field(default_factory=list)
    connect_ports: list[int] | None = None
    scope: bool = True

    def needs_abi(self) -> int:
        """The lowest ABI version that enforces all of this policy."""
        if self.scope:
            return 6
        return 4 if self.connect_ports is not None else 1


def _add_path(ruleset: int, path: Path, access: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except FileNotFoundError:
        return  # nothing there to grant (an optional folder such as /lib64)
    try:
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            access &= _FILE_RIGHTS
        attr = _PathBeneathAttr(access, fd)
        if _libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_PATH_BENEATH, ctypes.byref(attr), 0):
            err = ctypes.get_errno()
            raise LandlockUnavailable(f"landlock: cannot add a rule for {path}: {os.strerror(err)}")
    finally:
        os.close(fd)


def _add_port(ruleset: int, port: int) -> None:
    attr = _NetPortAttr(CONNECT_TCP, port)
    if _libc.syscall(_SYS_ADD_RULE, ruleset, _RULE_NET_PORT, ctypes.byref(attr), 0):
        err = ctypes.get_errno()
        raise LandlockUnavailable(f"landlock: cannot allow port {port}: {os.strerror(err)}")


def restrict(policy: Policy) -> int:
    """Apply ``policy`` to this process (and all it starts); return the ABI version used.

    Needs ``PR_SET_NO_NEW_PRIVS`` set first (or ``CAP_SYS_ADMIN``). Raises
    :class:`LandlockUnavailable` when the kernel cannot enforce the whole policy.
    """
    abi = abi_version()
    if abi < policy.needs_abi():
        have = f"ABI {abi}" if abi else "no Landlock"
        raise LandlockUnavailable(f"landlock: the kernel has {have}; the sandbox needs ABI "
                                  f"{policy.needs_abi()}")  # fmt: skip
    fs = _fs_rights(abi)
    net = BIND_TCP | CONNECT_TCP if policy.connect_ports is not None else 0
    scoped = SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL if policy.scope else 0
    attr = _RulesetAttr(fs, net, scoped)
    ruleset = _libc.syscall(_SYS_CREATE_RULESET, ctypes.byref(attr),
                            ctypes.c_size_t(ctypes.sizeof(attr)), ctypes.c_uint32(0))  # fmt: skip
    if ruleset < 0:
        err = ctypes.get_errno()
        raise LandlockUnavailable(f"landlock: cannot create a ruleset: {os.strerror(err)}")
    try:
        for path in _unique(policy.read):
            _add_path(ruleset, path, READ_ONLY)
        for path in _unique(policy.write):
            _add_path(ruleset, path, fs)
        for port in policy.connect_ports or ():
            _add_port(ruleset, port)
        if _libc.syscall(_SYS_RESTRICT_SELF, ruleset, 0):
            err = ctypes.get_errno()
            raise LandlockUnavailable(f"landlock: cannot restrict this process: "
                                      f"{os.strerror(err)}")  # fmt: skip
    finally:
        os.close(ruleset)
    return abi


def _unique(paths: Iterable[Path]) -> list[Path]:
    seen: dict[str, Path] = {}
    for p in paths:
        seen.setdefault(str(p), p)
    return list(seen.values())
