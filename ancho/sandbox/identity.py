"""Who a Docker executor runs as: its sandbox's owner, never root.

Mesos' Docker containerizer starts a container as its image's user (no ``--user``), and
the agent hands the sandbox to ``FrameworkInfo.user`` (``CommandInfo.user`` when set),
mode 0750, before mounting it at ``/mnt/mesos/sandbox``. An executor that ran as a fixed
image user could then not write its own sandbox on a real agent, whose framework user
has some uid of the cluster's. So Ancho's executor image runs as root with only
``CAP_SETUID`` and ``CAP_SETGID`` (the framework's ``DockerInfo.parameters``), and the
executor's first act, before it writes anything, is :func:`become_sandbox_owner`:

* a sandbox owned by a user (uid ≠ 0): the executor becomes that uid and gid, as the
  Mesos containerizer would have started it (``--switch_user``);
* a sandbox owned by root (a framework registered as root, e.g. a development machine):
  the executor does not stay root. It makes its work folders in the sandbox
  (:data:`WORK_FOLDERS`, group-writable), then becomes :data:`FALLBACK_UID` (the image's
  ``ancho`` user) in the sandbox's group, which the 0750 sandbox lets in.

Either way the kernel clears every capability at the change of uid, which is checked.
What the executor does next (a user namespace for the model's process, see
:func:`~.process.isolate`) is what an unprivileged executor does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: The image's unprivileged user (``docker/executor/Dockerfile``), taken when the
#: sandbox belongs to root.
FALLBACK_UID = 1000
#: The folders an executor writes in its sandbox (temporary files, the model's scratch
#: folder, its cache when the agent shares none).
WORK_FOLDERS = ("tmp", "scratch", "cache")


class IdentityError(Exception):
    """The executor could not give up root."""


@dataclass(slots=True, frozen=True)
class Identity:
    """A uid and gid."""

    uid: int
    gid: int


def executor_identity(owner_uid: int, owner_gid: int) -> Identity:
    """Who the executor becomes for a sandbox owned by ``owner_uid:owner_gid``."""
    if owner_uid != 0:
        return Identity(owner_uid, owner_gid)
    return Identity(FALLBACK_UID, owner_gid)


def _capabilities() -> tuple[int, int]:
    """The permitted and effective capability masks of this process."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return int(fields.get("CapPrm", "0"), 16), int(fields.get("CapEff", "0"), 16)


def become_sandbox_owner(sandbox: Path) -> Identity | None:
    """Give up root for the identity :func:`executor_identity` picks for ``sandbox``.

    Returns the identity taken, or None when this process is not root (it already runs
    as whoever was asked for, e.g. with an explicit ``--user``).
    """
    if os.geteuid() != 0:
        return None
    try:
        st = sandbox.stat()
    except OSError as exc:
        raise IdentityError(f"cannot stat the sandbox {sandbox}: {exc.strerror}") from None
    who = executor_identity(st.st_uid, st.st_gid)
    try:
        if st.st_uid == 0:
            for name in WORK_FOLDERS:
                folder = sandbox / name
                folder.mkdir(exist_ok=True)
                folder.chmod(0o770)  # ours (root owns them): no capability needed
        os.setgroups([])
        os.setresgid(who.gid, who.gid, who.gid)
        os.setresuid(who.uid, who.uid, who.uid)
    except OSError as exc:
        raise IdentityError(
            f"cannot become uid {who.uid} gid {who.gid} (the container needs CAP_SETUID and"
            f" CAP_SETGID): {exc.strerror}"
        ) from None
    if any(_capabilities()):
        raise IdentityError("capabilities left after giving up root")
    return who
