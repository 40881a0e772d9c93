"""The model's own process: confined, it imports the model and runs sequences for the executor.

Started by :class:`executor.model_process.ModelProcess` as ``python -m executor.model_child
FD`` where FD is its end of a Unix socketpair. Messages are pickled tuples
(:mod:`multiprocessing.connection` framing):

executor → child
    ``("load", LoadRequest)``; ``("run", start, stop, attempt)``; ``("names", [...])``
    (the answer to ``register``); ``("cancel",)``
child → executor
    ``("ready",)`` or ``("load_error", message)``; ``("register", [...])`` (the first
    sequence's output names, for the store); ``("results", [row, ...])`` in chunks;
    ``("done",)`` at the end of a batch.

A row is the tuple ``(sequence, status, outputs, error, attempt, duration_s)``.

Its stdout and stderr are pipes to the executor, which copies them to its own and to
the run's log; stdout is made line-buffered so a line shows up as soon as it is printed.
"""

from __future__ import annotations

import io
import os
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

#: A chunk goes to the executor after this many sequences or this many seconds.
CHUNK_ROWS = 1024
CHUNK_S = 0.05


@dataclass(slots=True, frozen=True)
class LoadRequest:
    """What the child needs to import a run's model."""

    model_dir: str
    entrypoint: str
    setup: str | None
    params: dict[str, Any]
    seed: int
    outputs: list[str] | None
    requirements_dir: str | None
    network: bool


class _Channel:
    """The child's end: remembers a cancel that arrives while it waits for names."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.cancelled = False

    def register(self, names: list[str]) -> list[str]:
        self.conn.send(("register", names))
        while True:
            msg = self.conn.recv()
            if msg[0] == "names":
                return list(msg[1])
            if msg[0] == "cancel":
                self.cancelled = True

    def poll_cancel(self) -> bool:
        while not self.cancelled and self.conn.poll():
            if self.conn.recv()[0] == "cancel":
                self.cancelled = True
        return self.cancelled


def _load(req: LoadRequest, channel: _Channel) -> tuple[Any, Any]:
    from ancho.model import LoadedModel, OutputNames
    from ancho.requirements import activate

    if req.requirements_dir:
        activate(Path(req.requirements_dir))
    model = LoadedModel.load(Path(req.model_dir), req.entrypoint, req.params, req.setup)
    return model, OutputNames(req.outputs, channel.register)


def _run_batch(channel: _Channel, model: Any, names: Any, seed: int, msg: tuple[Any, ...]) -> None:
    from ancho.model import run_sequences

    _, start, stop, attempt = msg
    channel.cancelled = False
    send = channel.conn.send
    clock = time.monotonic
    rows: list[tuple[Any, ...]] = []
    last = clock()
    for r in run_sequences(model, seed, start, stop, attempt, names):
        rows.append((r.sequence, r.status, r.outputs, r.error, r.attempt, r.duration_s))
        if len(rows) >= CHUNK_ROWS or clock() - last >= CHUNK_S:
            send(("results", rows))
            rows = []
            last = clock()
            if channel.poll_cancel():
                break
    if rows:
        send(("results", rows))
    send(("done",))


def serve(conn: Connection) -> None:
    """Confine this process, load the model, then run batches until the executor hangs up."""
    from ancho.errors import ModelError

    from .sandbox import SandboxUnavailable, confine

    channel = _Channel(conn)
    kind, req = conn.recv()
    assert kind == "load"
    try:
        confine(req.network)
        model, names = _load(req, channel)
    except (ModelError, SandboxUnavailable) as exc:
        text = exc.format_message() if isinstance(exc, ModelError) else f"sandbox: {exc}"
        conn.send(("load_error", text))
        return
    conn.send(("ready",))
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg[0] == "run":
            _run_batch(channel, model, names, req.seed, msg)


def main() -> None:
    """Entry point: ``python -m executor.model_child FD``."""
    from .sandbox import die_with_parent

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
