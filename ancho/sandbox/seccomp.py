"""A seccomp filter for user code: classic BPF built by hand, no library needed.

The filter (installed by :func:`install`, for x86-64 and arm64) makes:

* ``socket(2)`` fail with ``EACCES`` (unless sockets are allowed, as pip needs them):
  no TCP, UDP, raw, netlink or Unix socket, so nothing on loopback or anywhere else is
  reachable. A socketpair made before and inherited still works;
* ``ptrace``, ``process_vm_readv``/``writev`` and ``pidfd_getfd`` fail with ``EPERM``:
  no reaching into another process' memory or descriptors;
* the syscalls that widen what a process can do, or attack the kernel, fail with
  ``EPERM``: new namespaces (``unshare``, ``setns``, ``clone`` with a ``CLONE_NEW*``
  flag), mounts of every kind, ``open_by_handle_at`` (which opens files without a
  path, around Landlock), keyrings, ``bpf``, ``userfaultfd``, ``perf_event_open``,
  ``io_uring_setup`` (socket operations around this filter) and kernel modules;
* ``clone3`` fail with ``ENOSYS``: its flags live in memory a filter cannot read, and
  the C library falls back to ``clone`` when it is missing;
* syscalls of a foreign ABI (i386 or x32 on x86-64) fail with ``EPERM``.

Everything else is allowed. The filter is inherited by every process the confined one
starts and can never be removed.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct

PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2

# Classic BPF opcodes used by seccomp filters (linux/filter.h, linux/seccomp.h).
_LD_W_ABS = 0x20  # BPF_LD | BPF_W | BPF_ABS
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JGE_K = 0x35  # BPF_JMP | BPF_JGE | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_RET_K = 0x06  # BPF_RET | BPF_K
_RET_ALLOW = 0x7FFF0000
_RET_ERRNO = 0x00050000
_OFFSET_NR = 0  # struct seccomp_data: int nr; __u32 arch; __u64 ip; __u64 args[6]
_OFFSET_ARCH = 4
_OFFSET_ARG0_LOW = 16  # little-endian: the low 32 bits of args[0]

#: CLONE_NEWTIME | NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET
CLONE_NEW_FLAGS = 0x80 | 0x20000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 \
    | 0x20000000 | 0x40000000  # fmt: skip


class SeccompUnavailable(Exception):
    """The kernel or architecture cannot take the filter."""


# Syscall numbers of (x86-64, arm64); io_uring and the new mount API share numbers.
_NUMBERS: dict[str, tuple[int, int]] = {
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "pidfd_getfd": (438, 438),
    "io_uring_setup": (425, 425),
    "unshare": (272, 97),
    "setns": (308, 268),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "name_to_handle_at": (303, 264),
    "open_by_handle_at": (304, 265),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "bpf": (321, 280),
    "userfaultfd": (323, 282),
    "perf_event_open": (298, 241),
    "kexec_load": (246, 104),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
}
_SOCKET = (41, 198)
_CLONE = (56, 220)
_CLONE3 = (435, 435)
# (AUDIT_ARCH value, index into the number pairs, first number of a foreign ABI or 0).
_ARCHES = {"x86_64": (0xC000003E, 0, 0x40000000), "aarch64": (0xC00000B7, 1, 0)}


def build_filter(machine: str, deny_sockets: bool = True) -> bytes:
    """The seccomp program for ``machine`` as packed ``struct sock_filter`` entries."""
    try:
        arch, col, foreign = _ARCHES[machine]
    except KeyError:
        raise SeccompUnavailable(f"no seccomp filter for architecture {machine}") from None
    # Entries are (code, jump-if-true label, jump-if-false label, k); labels resolve below.
    prog: list[tuple[int, str | int, str | int, int]] = [
        (_LD_W_ABS, 0, 0, _OFFSET_ARCH),
        (_JEQ_K, 1, 0, arch),
        (_RET_K, 0, 0, _RET_ERRNO | errno.EPERM),
        (_LD_W_ABS, 0, 0, _OFFSET_NR),
    ]
    if foreign:
        prog.append((_JGE_K, "eperm", 0, foreign))
    if deny_sockets:
        prog.append((_JEQ_K, "eacces", 0, _SOCKET[col]))
    for numbers in _NUMBERS.values():
        prog.append((_JEQ_K, "eperm", 0, numbers[col]))
    prog.append((_JEQ_K, "enosys", 0, _CLONE3[col]))
    prog.append((_JEQ_K, "clone", 0, _CLONE[col]))
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    labels = {"clone": len(prog)}
    prog.append((_LD_W_ABS, 0, 0, _OFFSET_ARG0_LOW))  # clone's flags are its first argument
    prog.append((_JSET_K, "eperm", 0, CLONE_NEW_FLAGS))
    prog.append((_RET_K, 0, 0, _RET_ALLOW))
    for label, err in (("eacces", errno.EACCES), ("eperm", errno.EPERM),
                       ("enosys", errno.ENOSYS)):  # fmt: skip
        labels[label] = len(prog)
        prog.append((_RET_K, 0, 0, _RET_ERRNO | err))

    def offset(index: int, target: str | int) -> int:
        return labels[target] - index - 1 if isinstance(target, str) else target

    return b"".join(
        struct.pack("HBBI", code, offset(i, jt), offset(i, jf), k)
        for i, (code, jt, jf, k) in enumerate(prog)
    )


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def install(deny_sockets: bool = True) -> None:
    """Install the filter on this process (``PR_SET_NO_NEW_PRIVS`` must be set first)."""
    program = build_filter(platform.machine(), deny_sockets)
    buf = ctypes.create_string_buffer(program, len(program))
    fprog = _SockFprog(len(program) // 8, ctypes.cast(buf, ctypes.c_void_p))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p, ctypes.c_ulong,
                           ctypes.c_ulong]  # fmt: skip
    if libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
        err = ctypes.get_errno()
        raise SeccompUnavailable(f"installing the seccomp filter failed: {os.strerror(err)}")
