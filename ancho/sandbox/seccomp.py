"""Confinement of model code, applied by the model's own process before it imports the model.

An executor needs the network (the agent, the store, model sources, pip); model code by
default must not have it. So model code runs in a child process of the executor (see
:mod:`executor.model_process`) that calls :func:`confine` first:

* ``PR_SET_NO_NEW_PRIVS``: nothing it executes can gain privileges (set-uid binaries,
  file capabilities); required for an unprivileged seccomp filter.
* a seccomp filter (classic BPF, no library needed) that makes ``socket(2)`` fail with
  ``EACCES``: no TCP, UDP, raw, netlink or Unix socket can be created, so no listener on
  loopback or anywhere else is reachable. The ``socketpair`` it talks to the executor
  over was made before and is inherited. ``ptrace``, ``process_vm_readv``/``writev``,
  ``pidfd_getfd`` and ``io_uring_setup`` fail with ``EPERM``, so the child cannot reach
  into the executor (which holds the store's connection) or submit socket operations
  around the filter. Syscalls of a foreign ABI (i386 or x32 on x86-64) are refused too.

The executor itself calls :func:`protect_executor`: a non-dumpable process cannot be
ptraced nor have its ``/proc/PID/mem`` or ``environ`` read by a process of the same user.

With ``executor.network: "host"`` in the spec the seccomp filter is not installed (the
explicit opt-out); the rest still applies. The filter is built for x86-64 and arm64;
elsewhere :func:`confine` raises :class:`SandboxUnavailable` and the run fails rather
than run model code with the network.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from pathlib import Path

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_SET_SECCOMP = 22
PR_SET_NO_NEW_PRIVS = 38
SECCOMP_MODE_FILTER = 2

# Classic BPF opcodes used by seccomp filters (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_OFFSET_NR = 0  # struct seccomp_data: int nr; __u32 arch; __u64 ip; __u64 args[6]
_OFFSET_ARCH = 4


class SandboxUnavailable(Exception):
    """The kernel or architecture cannot confine model code as asked."""


# (AUDIT_ARCH value, syscall numbers, first number of a foreign ABI sharing the arch or 0).
_ARCHES: dict[str, tuple[int, dict[str, int], int]] = {
    "x86_64": (
        0xC000003E,
        {
            "socket": 41,
            "ptrace": 101,
            "process_vm_readv": 310,
            "process_vm_writev": 311,
            "io_uring_setup": 425,
            "pidfd_getfd": 438,
        },
        0x40000000,  # x32 syscalls are nr | 0x40000000
    ),
    "aarch64": (
        0xC00000B7,
        {
            "socket": 198,
            "ptrace": 117,
            "process_vm_readv": 270,
            "process_vm_writev": 271,
            "io_uring_setup": 425,
            "pidfd_getfd": 438,
        },
        0,
    ),
}


def _filter(machine: str) -> bytes:
    """The seccomp program for ``machine`` as packed ``struct sock_filter`` entries."""
    try:
        arch, numbers, foreign = _ARCHES[machine]
    except KeyError:
        raise SandboxUnavailable(f"no seccomp filter for architecture {machine}") from None
    deny_eacces, deny_eperm = "eacces", "eperm"
    # Entries are (code, jump-if-true label, jump-if-false label, k); labels resolve below.
    prog: list[tuple[int, str | int, str | int, int]] = [
        (_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        (_JEQ_K, 1, 0, arch),
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        (_LD_W_ABS, 0, 0, _OFFSET_NR),
    ]
    if foreign:
        prog.append((_JGE_K, deny_eperm, 0, foreign))
    for name, nr in numbers.items():
        prog.append((_JEQ_K, deny_eacces if name == "socket" else deny_eperm, 0, nr))
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    labels = {deny_eacces: len(prog), deny_eperm: len(prog) + 1}
    prog.append((_RET_K, 0, 0, _RET_ERRNO | errno.EACCES))
    prog.append((_RET_K, 0, 0, _RET_ERRNO | errno.EPERM))

    def offset(index: int, target: str | int) -> int:
        return labels[target] - index - 1 if isinstance(target, str) else target

    return b"".join(
        struct.pack("HBBI", code, offset(i, jt), offset(i, jf), k)
        for i, (code, jt, jf, k) in enumerate(prog)
    )


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def _prctl(option: int, arg: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong]  # fmt: skip
    if libc.prctl(option, arg, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise SandboxUnavailable(f"prctl({option}) failed: {os.strerror(err)}")


def confine(network: bool) -> None:
    """Confine this process for running model code (see the module docstring)."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1)
    if network:
        return
    program = _filter(platform.machine())
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]  # fmt: skip
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise SandboxUnavailable(f"installing the seccomp filter failed: {os.strerror(err)}")


def die_with_parent() -> None:
    """Get SIGKILL when the executor dies, even in the middle of a long sequence."""
    _prctl(PR_SET_PDEATHSIG, 9)


def protect_executor() -> None:
    """Make the executor non-dumpable: model code cannot ptrace it or read its memory."""
    _prctl(PR_SET_DUMPABLE, 0)


# --- memory ----------------------------------------------------------------------
_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes(pid: int) -> int:
    """Resident memory of ``pid`` (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as fh:
            return int(fh.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def cgroup_oom_kills() -> int:
    """How many processes the kernel's OOM killer has killed in this cgroup (-1: unknown).

    cgroup v2 counts them in ``memory.events``; v1 in ``memory.oom_control``.
    """
    for path in ("/sys/fs/cgroup/memory.events", "/sys/fs/cgroup/memory/memory.oom_control"):
        try:
            for line in Path(path).read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
        except (OSError, ValueError):
            continue
    return -1
