"""The executor's side of the model's process: start it, feed it batches, watch its memory.

The child (:mod:`executor.model_child`) is confined before it imports the model, and talks
to the executor over an inherited Unix socketpair only, in :mod:`executor.protocol`'s
data-only messages, every one of which is validated here: a malformed one ends the
batch (:class:`~executor.protocol.InvalidMessage`) and the process is killed. The
child's environment holds only what an interpreter needs (:func:`child_environment`):
no store URL, no token, no Mesos or AWS variables. Its stdout and stderr are pipes to
the executor (made here, before the child confines itself): two threads copy them to
the executor's own stdout/stderr and, line by line, to the run's log
(:mod:`executor.runlog`). Without a run log the child inherits the executor's
stdout/stderr.

Memory: a watchdog thread samples the child's resident memory every 50 ms and kills it
above ``limit_mb``; a kill by the kernel's OOM killer (the container's cgroup) is told
apart from other deaths by the cgroup's ``oom_kill`` counter. Either way the batch
ends with :class:`ModelCrashed` whose message says out of memory.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Generator
from multiprocessing.connection import Connection

from ancho.errors import ModelError
from ancho.results import SequenceResult

from .memory import cgroup_oom_kills, rss_bytes
from .protocol import (
    InvalidMessage,
    LoadRequest,
    RowChecker,
    error_of,
    names_of,
    pid_of,
    receive,
    send,
    weaker_of,
)
from .runlog import RunLog, pump

log = logging.getLogger("ancho.executor")

#: The only variables model code gets from the executor's environment: an interpreter's
#: and numerical libraries' settings. Everything else (credentials, Mesos' and Ancho's
#: own plumbing, proxies) stays out.
_CHILD_NAMES = frozenset({"PATH", "LANG", "TZ", "TERM"})
_CHILD_PREFIXES = ("PYTHON", "LC_", "OPENBLAS_", "OMP_", "MKL_", "NUMEXPR_")
_WATCH_S = 0.05


class ModelCrashed(Exception):
    """The model's process died in the middle of a batch."""


def child_environment(scratch: str, environ: dict[str, str] | None = None) -> dict[str, str]:
    """What the model's process gets of the executor's environment, and its scratch folder."""
    env = dict(os.environ if environ is None else environ)
    kept = {k: v for k, v in env.items() if k in _CHILD_NAMES or k.startswith(_CHILD_PREFIXES)}
    return {**kept, "HOME": scratch, "TMPDIR": scratch, "PYTHONDONTWRITEBYTECODE": "1"}


class ModelProcess:
    """One model process; :meth:`run` yields a batch's results as they come."""

    def __init__(self, request: LoadRequest, limit_mb: float | None,
                 register: Callable[[list[str]], list[str]],
                 spec_mb: float | None = None, runlog: RunLog | None = None) -> None:  # fmt: skip
        self.request = request
        self.runlog = runlog
        self._pumps: list[threading.Thread] = []
        self.spec_mb = spec_mb
        self.limit_bytes = int(limit_mb * 2**20) if limit_mb else None
        self.register = register
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._over_limit = False
        self._oom_before = -1
        self._watchdog: threading.Thread | None = None
        #: The sandboxed process (inside its PID namespace), as the watchdog sees it.
        self._sandbox_pid: int | None = None
        self.names: list[str] | None = request.outputs

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        """Start the process and load the model; raise ModelError if it cannot load."""
        ours, theirs = socket.socketpair()
        self._oom_before = cgroup_oom_kills()
        # (read end, write end, our own stream, level in the run log); os.pipe() makes
        # close-on-exec descriptors, so only this child gets the write ends (as 1 and 2).
        pipes = [(*os.pipe(), 1, "info"), (*os.pipe(), 2, "warning")] if self.runlog else []
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "executor.model_child", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=child_environment(self.request.scratch_dir),
                stdin=subprocess.DEVNULL,
                stdout=pipes[0][1] if pipes else None,
                stderr=pipes[1][1] if pipes else None,
            )
        except BaseException:
            for read, _, _, _ in pipes:
                os.close(read)
            raise
        finally:
            theirs.close()
            for _, write, _, _ in pipes:
                os.close(write)
        for read, _, mirror, level in pipes:
            name = f"ancho-model-{'stdout' if mirror == 1 else 'stderr'}"
            thread = threading.Thread(target=pump, args=(read, mirror, level, self.runlog),
                                      name=name, daemon=True)  # fmt: skip
            thread.start()
            self._pumps.append(thread)
        self._conn = Connection(ours.detach())
        self._watchdog = threading.Thread(target=self._watch, name="ancho-model-memory",
                                          daemon=True)  # fmt: skip
        self._watchdog.start()
        send(self._conn, self.request.to_dict())
        try:
            self._await_ready(self._conn)
        except (EOFError, OSError):
            raise ModelError(f"the model's process died while loading ({self._death()})") from None
        except InvalidMessage as exc:
            self.kill()
            raise ModelError(str(exc)) from None

    def _await_ready(self, conn: Connection) -> None:
        """The sandboxed pid, then ``ready`` (or the reason the model did not load)."""
        while True:
            msg = receive(conn)
            kind = msg["t"]
            if kind == "pid" and self._sandbox_pid is None:
                self._sandbox_pid = pid_of(msg)
            elif kind == "ready" and self._sandbox_pid is not None:
                for what in weaker_of(msg):
                    log.warning("sandbox weaker than required, as the agent allows "
                                "(ANCHO_SANDBOX_ALLOW_WEAKER): no %s", what)  # fmt: skip
                return
            elif kind == "load_error":
                message = error_of(msg)
                self.close()
                raise ModelError(message)
            else:
                raise InvalidMessage(f"unexpected {kind[:40]!r} while loading")

    def kill(self) -> None:
        """Kill the process (it broke the protocol) and clean up."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
        self.close()

    def alive(self) -> bool:
        """Whether the process is up (a crashed one is replaced before the next batch)."""
        return self._proc is not None and self._proc.poll() is None

    def close(self) -> None:
        """Hang up and make sure the process is gone."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        # The model's last lines: its output ends with it (unless a process it started
        # still holds the pipes; then its thread goes on alone and closes them at the end).
        for thread in self._pumps:
            thread.join(timeout=2)
        self._pumps = []

    # --- batches ---------------------------------------------------------------------
    def run(self, start: int, stop: int, attempt: int) -> Generator[SequenceResult, None, None]:
        """Results of sequences ``start..stop-1`` in order.

        Closing the iterator early cancels the batch (the child stops after its current
        chunk). Raises :class:`ModelCrashed` when the process dies; the results it sent
        before dying have been yielded. Raises
        :class:`~executor.protocol.InvalidMessage` (after killing the process) when it
        breaks the protocol.
        """
        conn = self._conn
        assert conn is not None
        send(conn, {"t": "run", "start": start, "stop": stop, "attempt": attempt})
        checker = RowChecker(start, stop, attempt, self.names)
        finished = False
        try:
            while True:
                try:
                    msg = receive(conn)
                except (EOFError, OSError):
                    raise ModelCrashed(self._death()) from None
                kind = msg["t"]
                if kind == "results":
                    yield from checker.rows(msg)
                elif kind == "register":
                    self._answer_register(conn, msg, checker)
                elif kind == "done":
                    finished = True
                    return
                else:
                    raise InvalidMessage(f"unexpected {kind[:40]!r} in a batch")
        except InvalidMessage:
            finished = True
            self.kill()
            raise
        finally:
            if not finished and self.alive():
                self._cancel(conn, checker)

    def _answer_register(self, conn: Connection, msg: dict[str, object],
                         checker: RowChecker) -> None:  # fmt: skip
        if self.names is not None:
            raise InvalidMessage("register after the outputs were known")
        self.names = self.register(names_of(msg))
        checker.names = frozenset(self.names)
        send(conn, {"t": "names", "names": self.names})

    def _cancel(self, conn: Connection, checker: RowChecker) -> None:
        try:
            send(conn, {"t": "cancel"})
            while True:
                msg = receive(conn)
                if msg["t"] == "register":
                    self._answer_register(conn, msg, checker)
                elif msg["t"] == "done":
                    return
        except InvalidMessage:
            self.kill()
        except (EOFError, OSError):
            return

    # --- memory ----------------------------------------------------------------------
    def _watch(self) -> None:
        proc = self._proc
        assert proc is not None
        limit = self.limit_bytes
        while proc.poll() is None:
            pid = self._sandbox_pid or proc.pid
            if limit is not None and rss_bytes(pid) > limit:
                self._over_limit = True
                proc.send_signal(signal.SIGKILL)
                return
            time.sleep(_WATCH_S)

    def _death(self) -> str:
        """Why the process is gone, in words."""
        proc = self._proc
        assert proc is not None
        try:
            code = proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        limit_mb = (self.limit_bytes or 0) / 2**20
        oom_now = cgroup_oom_kills()
        if self._over_limit or (self._oom_before >= 0 and oom_now > self._oom_before):
            budget = f"resources.mem_mb = {self.spec_mb:.0f}" if self.spec_mb else "its limit"
            return (
                f"out of memory: the model's process went over {limit_mb:.0f} MB ({budget},"
                " less what the executor holds) and was killed; raise resources.mem_mb"
            )
        if code < 0:
            return f"the model's process was killed by {signal.Signals(-code).name}"
        return f"the model's process exited with status {code}"
