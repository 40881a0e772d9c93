"""The model's own process: confined, it imports the model and runs sequences for the executor.

Started by :class:`executor.model_process.ModelProcess` as ``python -m executor.model_child
FD`` where FD is its end of a Unix socketpair; the messages are :mod:`executor.protocol`'s
(JSON, never pickle). The first one, ``load``, says what to import and how to confine:
the process confines itself (:func:`ancho.sandbox.confine`: a PID namespace, limits,
Landlock, seccomp), which forks — the parent stays outside as a reaper and tells the
executor the sandboxed process' pid — then imports the model and answers ``ready``.

Its stdout and stderr are pipes to the executor, which copies them to its own and to
the run's log; stdout is made line-buffered so a line shows up as soon as it is printed.
"""

from __future__ import annotations

import io
import os
import sys
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from .protocol import LoadRequest, receive, send, send_chunk

#: A chunk goes to the executor after this many sequences or this many seconds.
CHUNK_ROWS = 1024
CHUNK_S = 0.05


class _Channel:
    """The child's end: remembers a cancel that arrives while it waits for names."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.cancelled = False

    def register(self, names: list[str]) -> list[str]:
        send(self.conn, {"t": "register", "names": names})
        while True:
            msg = receive(self.conn)
            if msg["t"] == "names":
                return list(msg["names"])
            if msg["t"] == "cancel":
                self.cancelled = True

    def poll_cancel(self) -> bool:
        while not self.cancelled and self.conn.poll():
            if receive(self.conn)["t"] == "cancel":
                self.cancelled = True
        return self.cancelled


def _confine(req: LoadRequest, conn: Connection) -> list[str]:
    """Confine this process for ``req``'s model; only the sandboxed child returns."""
    from ancho.sandbox import Limits, Profile, confine

    read = [Path(req.model_dir)]
    if req.requirements_dir:
        read.append(Path(req.requirements_dir))
    profile = Profile(
        read=read,
        write=[Path(req.scratch_dir)],
        sockets=req.network,
        limits=Limits(req.max_processes, req.max_open_files, req.max_file_mb),
    )

    def announce(pid: int) -> None:  # in the reaper, outside the sandbox
        send(conn, {"t": "pid", "pid": pid})

    def preload() -> None:  # numpy reads /sys and starts threads: after isolation only
        import numpy  # noqa: F401

        import ancho.model  # noqa: F401

    weaker = confine(profile, allow_weaker=req.allow_weaker, on_fork=announce, prepare=preload)
    if any(w.startswith("process isolation") for w in weaker):
        send(conn, {"t": "pid", "pid": os.getpid()})  # not isolated (allowed): watch us
    return weaker


def _load(req: LoadRequest, channel: _Channel) -> tuple[Any, Any]:
    from ancho.model import LoadedModel, OutputNames
    from ancho.requirements import activate

    if req.requirements_dir:
        activate(Path(req.requirements_dir))
    model = LoadedModel.load(Path(req.model_dir), req.entrypoint, req.params, req.setup)
    return model, OutputNames(req.outputs, channel.register)


def _run_batch(channel: _Channel, model: Any, names: Any, seed: int, msg: dict[str, Any]) -> None:
    from ancho.model import run_sequences

    start, stop, attempt = int(msg["start"]), int(msg["stop"]), int(msg["attempt"])
    channel.cancelled = False
    conn = channel.conn
    clock = time.monotonic
    rows: list[Any] = []
    last = clock()
    for r in run_sequences(model, seed, start, stop, attempt, names):
        rows.append(r)
        if len(rows) >= CHUNK_ROWS or clock() - last >= CHUNK_S:
            send_chunk(conn, rows, names.names or [])
            rows = []
            last = clock()
            if channel.poll_cancel():
                break
    if rows:
        send_chunk(conn, rows, names.names or [])
    send(conn, {"t": "done"})


def serve(conn: Connection) -> None:
    """Confine this process, load the model, then run batches until the executor hangs up."""
    from ancho.errors import ModelError
    from ancho.sandbox import SandboxUnavailable

    channel = _Channel(conn)
    msg = receive(conn)
    if msg["t"] != "load":
        return
    req = LoadRequest.from_dict(msg)
    try:
        weaker = _confine(req, conn)
        os.chdir(req.scratch_dir)
        model, names = _load(req, channel)
    except (ModelError, SandboxUnavailable) as exc:
        text = exc.format_message() if isinstance(exc, ModelError) else f"sandbox: {exc}"
        send(conn, {"t": "load_error", "message": text})
        return
    send(conn, {"t": "ready", "weaker": weaker})
    while True:
        try:
            msg = receive(conn)
        except EOFError:
            return
        if msg["t"] == "run":
            _run_batch(channel, model, names, req.seed, msg)


def main() -> None:
    """Entry point: ``python -m executor.model_child FD``."""
    from ancho.sandbox.process import die_with_parent

    die_with_parent()
    # stdout is a pipe to the executor: line-buffered, each line reaches the run's log
    # while the sequence that printed it is still running (stderr always is).
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
    conn = Connection(int(sys.argv[1]))
    try:
        serve(conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        pass  # the executor went away: so do we
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)  # skip interpreter teardown: model threads must not keep us alive


if __name__ == "__main__":
    main()
