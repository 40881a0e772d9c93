"""The messages between the executor and the model's process: data, never code.

Each message is framed by :mod:`multiprocessing.connection`'s ``send_bytes`` /
``recv_bytes`` (a length, then the bytes; never pickle) and read with a size cap. Most
are one JSON object. A chunk of results is a JSON header followed by columns of
numbers in a fixed binary layout (little-endian float64, int64 or one byte per bool),
which costs less than pickle on both sides. Decoding JSON or arrays of numbers runs no
code, and everything the model's process sends is checked field by field before the
executor acts on it: that process runs model code, so what it sends is hostile until
proven otherwise. Anything malformed raises :class:`InvalidMessage`; the executor ends
the batch with "model process sent an invalid message" and kills the process.

executor → model process (trusted)
    ``{"t": "load", ...LoadRequest}``; ``{"t": "run", "start", "stop", "attempt"}``;
    ``{"t": "names", "names": [...]}`` (the answer to ``register``); ``{"t": "cancel"}``
model process → executor (validated here)
    ``{"t": "pid", "pid"}`` (the sandboxed process, for the memory watchdog);
    ``{"t": "ready", "weaker": [...]}`` (mechanisms a permitted weaker sandbox left
    out) or ``{"t": "load_error", "message"}``; ``{"t": "register", "names"}`` (the
    first sequence's output names); results chunks (:func:`encode_chunk`);
    ``{"t": "done"}`` at the end of a batch.
"""

from __future__ import annotations

import json
import math
import struct
from array import array
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from typing import Any

from ancho.results import OUTPUT_NAME, SequenceResult

#: The largest message either side accepts (a chunk of rows, tracebacks included).
MAX_MESSAGE_BYTES = 16 * 2**20
#: Caps on what one message may carry.
MAX_OUTPUTS = 1024
MAX_TEXT = 64 * 1024
MAX_ROWS = 100_000  # sequences in one chunk

INVALID = "model process sent an invalid message"


class InvalidMessage(Exception):
    """The model's process broke the protocol; the message says how."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"{INVALID}: {detail}")


@dataclass(slots=True, frozen=True)
class LoadRequest:
    """What the model's process needs to import a run's model and confine itself."""

    model_dir: str
    entrypoint: str
    setup: str | None
    params: dict[str, Any]
    seed: int
    outputs: list[str] | None
    requirements_dir: str | None
    network: bool
    scratch_dir: str
    allow_weaker: bool = False
    max_processes: int = 256
    max_open_files: int = 1024
    max_file_mb: int = 1024

    def to_dict(self) -> dict[str, Any]:
        """The ``load`` message."""
        return {"t": "load", **asdict(self)}

    @classmethod
    def from_dict(cls, msg: dict[str, Any]) -> LoadRequest:
        """Read a ``load`` message (from the executor: trusted)."""
        return cls(**{k: v for k, v in msg.items() if k != "t"})


_JSON = b"J"
_CHUNK = b"C"  # then the header's length (4 bytes), the JSON header, the columns


def send(conn: Connection, msg: dict[str, Any]) -> None:
    """Send one JSON message."""
    conn.send_bytes(_JSON + json.dumps(msg, separators=(",", ":")).encode())


def receive(conn: Connection) -> dict[str, Any]:
    """One message as a dict; raises :class:`InvalidMessage` for anything else.

    ``EOFError``/``OSError`` (the peer is gone) pass through.
    """
    try:
        data = conn.recv_bytes(MAX_MESSAGE_BYTES)
    except OSError as exc:
        if "bad message length" in str(exc):
            raise InvalidMessage(f"more than {MAX_MESSAGE_BYTES} bytes") from None
        raise
    kind, body = data[:1], memoryview(data)[1:]
    payload = b""
    if kind == _CHUNK:
        if len(body) < 4 or (size := struct.unpack_from("<I", body)[0]) > len(body) - 4:
            raise InvalidMessage("a chunk's header is cut short")
        body, payload = body[4 : 4 + size], bytes(body[4 + size :])
    elif kind != _JSON:
        raise InvalidMessage("unknown framing")
    try:
        msg = json.loads(bytes(body))
    except (ValueError, RecursionError) as exc:
        raise InvalidMessage(f"not JSON ({type(exc).__name__})") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("t"), str):
        raise InvalidMessage("not an object with a type")
    if kind == _CHUNK:
        if msg["t"] != "results":
            raise InvalidMessage("only results come in chunks")
        msg["payload"] = payload
    elif msg["t"] == "results":
        raise InvalidMessage("results come in chunks")
    return msg


# --- validation of what the model's process sends ----------------------------------
def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidMessage(f"{what} must be a string of at most {MAX_TEXT} characters")
    return value


def names_of(msg: dict[str, Any]) -> list[str]:
    """The output names of a ``register`` message."""
    names = msg.get("names")
    if not isinstance(names, list) or not 0 < len(names) <= MAX_OUTPUTS:
        raise InvalidMessage(f"register needs 1 to {MAX_OUTPUTS} names")
    for name in names:
        if not isinstance(name, str) or not OUTPUT_NAME.match(name):
            raise InvalidMessage(f"bad output name {str(name)[:60]!r}")
    if len(set(names)) != len(names):
        raise InvalidMessage("duplicate output names")
    return names


def pid_of(msg: dict[str, Any]) -> int:
    """The process id of a ``pid`` message."""
    pid = msg.get("pid")
    if type(pid) is not int or not 0 < pid < 2**22:
        raise InvalidMessage("pid must be a process id")
    return pid


def weaker_of(msg: dict[str, Any]) -> list[str]:
    """What a ``ready`` message says the sandbox left out."""
    weaker = msg.get("weaker", [])
    if not isinstance(weaker, list) or len(weaker) > 16:
        raise InvalidMessage("ready.weaker must be a short list")
    return [_text(w, "ready.weaker[]") for w in weaker]


def error_of(msg: dict[str, Any]) -> str:
    """The message of a ``load_error``."""
    return _text(msg.get("message"), "load_error.message")


#: Column layouts: numpy dtype and the Python type every value of the column has.
_KINDS = {"f8": ("<f8", float), "i8": ("<i8", int), "b1": ("u1", bool)}


class RowChecker:
    """Checks the chunks of one batch: contiguous, in range, the run's outputs, sane errors."""

    def __init__(self, start: int, stop: int, attempt: int, names: list[str] | None) -> None:
        self.next = start
        self.stop = stop
        self.attempt = attempt
        self.names = frozenset(names) if names else None

    def rows(self, msg: dict[str, Any]) -> list[SequenceResult]:
        """The results of a chunk (see :func:`encode_chunk` for its layout)."""
        import numpy as np  # the executor's side only: the model's process loads it later

        first, attempt, n = msg.get("first"), msg.get("attempt"), msg.get("n")
        names, kinds = msg.get("names"), msg.get("kinds")
        if first != self.next or type(first) is not int:
            raise InvalidMessage(f"a chunk must start at sequence {self.next}")
        if attempt != self.attempt or type(attempt) is not int:
            raise InvalidMessage(f"the batch's attempt is {self.attempt}")
        if type(n) is not int or not 0 < n <= min(MAX_ROWS, self.stop - first):
            raise InvalidMessage(f"a chunk holds 1 to {MAX_ROWS} sequences within the batch")
        errors = self._failed(msg.get("failed"), n)
        ok = n - len(errors)
        if type(names) is not list or type(kinds) is not list or len(kinds) != len(names):
            raise InvalidMessage("a chunk needs names and one kind per name")
        if ok and (self.names is None or len(names) != len(self.names)
                   or frozenset(names) != self.names):  # fmt: skip
            raise InvalidMessage("a chunk's outputs differ from the run's")
        payload: bytes = msg["payload"]
        if len(payload) != 8 * n + sum(ok * (1 if k == "b1" else 8) for k in kinds
                                       if k in _KINDS):  # fmt: skip
            raise InvalidMessage("a chunk's columns do not fit its header")
        durations = np.frombuffer(payload, "<f8", n)
        if n and not (durations.min() >= 0 and durations.max() < math.inf):
            raise InvalidMessage("durations must be finite numbers >= 0")
        mixed = msg.get("json")
        if type(mixed) is not dict:
            raise InvalidMessage("a chunk's json columns must be an object")
        columns: list[list[Any]] = []
        offset = 8 * n
        for name, kind in zip(names, kinds, strict=True):
            if kind == "json":
                columns.append(_json_column(name, mixed.get(name), ok))
                continue
            if kind not in _KINDS:
                raise InvalidMessage(f"output {str(name)[:60]!r}: unknown column kind")
            dtype, _ = _KINDS[kind]
            values = np.frombuffer(payload, dtype, ok, offset)
            offset += values.nbytes
            if kind == "b1":
                if ok and values.max() > 1:
                    raise InvalidMessage(f"output {str(name)[:60]!r}: a bool is 0 or 1")
                columns.append(values.astype(bool).tolist())
            else:
                columns.append(values.tolist())
        self.next = first + n
        seqs = range(first, first + n)
        if not errors:  # the common case, kept to one pass
            rows = zip(seqs, zip(*columns, strict=True), durations.tolist(), strict=True)
            return [SequenceResult(i, "ok", dict(zip(names, row, strict=True)), None, attempt, d)
                    for i, row, d in rows]  # fmt: skip
        out: list[SequenceResult] = []
        oks: Iterator[tuple[Any, ...]] = zip(*columns, strict=True) if ok else iter(())
        for i, duration in enumerate(durations.tolist()):
            error = errors.get(i)
            if error is None:
                outputs = dict(zip(names, next(oks), strict=True))
                out.append(SequenceResult(first + i, "ok", outputs, None, attempt, duration))
            else:
                out.append(SequenceResult(first + i, "failed", {}, error, attempt, duration))
        return out

    @staticmethod
    def _failed(failed: Any, n: int) -> dict[int, dict[str, str]]:
        if type(failed) is not list or len(failed) > n:
            raise InvalidMessage("failed must be a list of [offset, error]")
        errors: dict[int, dict[str, str]] = {}
        last = -1
        for item in failed:
            if type(item) is not list or len(item) != 2:
                raise InvalidMessage("failed must be a list of [offset, error]")
            offset, error = item
            if type(offset) is not int or not last < offset < n:
                raise InvalidMessage("failed offsets must increase within the chunk")
            if type(error) is not dict or error.keys() != _ERROR_KEYS:
                raise InvalidMessage("an error needs type, message and traceback")
            for key in _ERROR_KEYS:
                _text(error[key], f"error.{key}")
            errors[offset] = error
            last = offset
        return errors


def _json_column(name: Any, column: Any, rows: int) -> list[Any]:
    if type(column) is not list or len(column) != rows:
        raise InvalidMessage(f"output {str(name)[:60]!r} needs one value per ok sequence")
    if not set(map(type, column)) <= {float, int, bool}:
        raise InvalidMessage(f"output {str(name)[:60]!r} holds a value that is not a number")
    ints = [v for v in column if type(v) is int]
    if ints and (min(ints) < -(2**63) or max(ints) >= 2**63):
        raise InvalidMessage(f"output {str(name)[:60]!r} holds an int beyond 64 bits")
    return column


_ERROR_KEYS = frozenset({"type", "message", "traceback"})


def _column(values: list[Any]) -> tuple[str, bytes]:
    kinds = set(map(type, values))
    if kinds <= {float}:
        return "f8", array("d", values).tobytes()
    if kinds <= {bool}:
        return "b1", bytes(values)
    if kinds <= {int}:
        try:
            return "i8", array("q", values).tobytes()
        except OverflowError:
            pass
    return "json", b""  # mixed types, or ints beyond 64 bits: values go in the header


def send_chunk(conn: Connection, results: list[SequenceResult], names: list[str]) -> None:
    """Send a contiguous chunk of a batch's results (see :func:`encode_chunk`)."""
    conn.send_bytes(encode_chunk(results, names))


def encode_chunk(results: list[SequenceResult], names: list[str]) -> bytes:
    """A chunk as bytes: a JSON header, then columns of numbers.

    Header: ``first`` (the first sequence; the chunk is contiguous), ``attempt``, ``n``
    (sequences), ``failed`` (``[offset, error]`` of the failed ones, texts cut to the
    cap), ``names`` and ``kinds`` (one per output: ``f8``, ``i8`` or ``b1``). Then the
    ``n`` durations as float64, then each output's column over the ok sequences. A
    column mixing ints, floats and bools (kind ``json``) goes in the header's ``json``.
    """
    failed: list[list[Any]] = []
    oks: list[dict[str, Any]] = []
    for i, r in enumerate(results):
        if r.status == "ok":
            oks.append(r.outputs)
            continue
        error = r.error or {}
        failed.append([i, {
            "type": str(error.get("type", ""))[:MAX_TEXT],
            "message": str(error.get("message", ""))[:MAX_TEXT],
            "traceback": str(error.get("traceback", ""))[-MAX_TEXT:],
        }])  # fmt: skip
    kinds, blobs = [], [array("d", [r.duration_s for r in results]).tobytes()]
    mixed: dict[str, list[Any]] = {}
    for name in names:
        values = [o[name] for o in oks]
        kind, blob = _column(values)
        kinds.append(kind)
        blobs.append(blob)
        if kind == "json":
            mixed[name] = values
    header = json.dumps({
        "t": "results", "first": results[0].sequence, "attempt": results[0].attempt,
        "n": len(results), "failed": failed, "names": names, "kinds": kinds, "json": mixed,
    }, separators=(",", ":")).encode()  # fmt: skip
    return b"".join((_CHUNK, struct.pack("<I", len(header)), header, *blobs))
