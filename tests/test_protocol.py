"""The executor ↔ model-process protocol: data round-trips exactly; anything else is refused."""

from __future__ import annotations

import json
import math
import pickle
import random
import socket
import struct
from multiprocessing.connection import Connection
from typing import Any

import pytest

from ancho.results import SequenceResult
from executor.protocol import (
    MAX_MESSAGE_BYTES,
    InvalidMessage,
    RowChecker,
    encode_chunk,
    names_of,
    pid_of,
    receive,
    send,
    send_chunk,
)


@pytest.fixture
def pair() -> Any:
    a, b = socket.socketpair()
    ca, cb = Connection(a.detach()), Connection(b.detach())
    yield ca, cb
    ca.close()
    cb.close()


def _results(start: int, n: int, seed: int = 1) -> list[SequenceResult]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        if rng.random() < 0.1:
            error = {"type": "ValueError", "message": f"bad {i}", "traceback": "Traceback…"}
            out.append(SequenceResult(i, "failed", {}, error, 2, rng.random()))
        else:
            outputs = {"x": rng.gauss(0, 1), "k": rng.randrange(-(2**63), 2**63),
                       "b": rng.random() < 0.5, "m": rng.choice([1, 2.5, True])}  # fmt: skip
            out.append(SequenceResult(i, "ok", outputs, None, 2, rng.random()))
    return out


def test_chunks_round_trip_bitwise_with_types(pair: Any) -> None:
    ours, theirs = pair
    names = ["x", "k", "b", "m"]
    sent = _results(10, 500)
    sent[3] = SequenceResult(13, "ok", {"x": math.nan, "k": 0, "b": True, "m": -math.inf}, None,
                             2, 0.0)  # fmt: skip
    send_chunk(theirs, sent, names)
    got = RowChecker(10, 600, 2, names).rows(receive(ours))
    assert [r.to_dict() for r in got][:3] == [r.to_dict() for r in sent][:3]
    for a, b in zip(got, sent, strict=True):
        assert (a.sequence, a.status, a.error, a.attempt) == (b.sequence, b.status, b.error,
                                                              b.attempt)  # fmt: skip
        assert a.duration_s == b.duration_s
        assert {k: (type(v), repr(v)) for k, v in a.outputs.items()} == {
            k: (type(v), repr(v)) for k, v in b.outputs.items()
        }


def test_consecutive_chunks_must_be_contiguous(pair: Any) -> None:
    ours, theirs = pair
    checker = RowChecker(0, 100, 2, ["x", "k", "b", "m"])
    send_chunk(theirs, _results(0, 20, 3), ["x", "k", "b", "m"])
    checker.rows(receive(ours))
    send_chunk(theirs, _results(25, 5, 3), ["x", "k", "b", "m"])  # skips 20..24
    with pytest.raises(InvalidMessage, match="start at sequence 20"):
        checker.rows(receive(ours))


def _chunk(**header: Any) -> bytes:
    payload = header.pop("_payload", struct.pack("<dd", 0.5, 1.0))
    base = {"t": "results", "first": 0, "attempt": 1, "n": 1, "failed": [], "names": ["x"],
            "kinds": ["f8"], "json": {}}  # fmt: skip
    base.update(header)
    body = json.dumps(base).encode()
    return b"C" + struct.pack("<I", len(body)) + body + payload


BAD: dict[str, bytes] = {
    "pickle": pickle.dumps(("results", [])),
    "pickle after a J": b"J" + pickle.dumps({"t": "done"}),
    "not an object": b"J[1, 2]",
    "no type": b'J{"rows": []}',
    "deep nesting": b"J" + b"[" * 100_000 + b"]" * 100_000,
    "results as json": b'J{"t": "results"}',
    "chunk cut short": b"C\x10\x00",
    "wrong first": _chunk(first=5),
    "wrong attempt": _chunk(attempt=2),
    "beyond the batch": _chunk(n=1000),
    "bool first": _chunk(first=False),
    "unknown names": _chunk(names=["y"]),
    "unknown kind": _chunk(kinds=["pickle"]),
    "short payload": _chunk(n=2),
    "failed offsets": _chunk(failed=[[3, {"type": "", "message": "", "traceback": ""}]]),
    "failed without an error": _chunk(failed=[[0, {"type": "E"}]]),
    "json column not numbers": _chunk(
        kinds=["json"], json={"x": ["os.system"]}, _payload=struct.pack("<d", 0.5)
    ),
    "json column int beyond 64 bits": _chunk(
        kinds=["json"], json={"x": [2**70]}, _payload=struct.pack("<d", 0.5)
    ),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_malformed_messages_are_refused(pair: Any, name: str) -> None:
    ours, theirs = pair
    theirs.send_bytes(BAD[name])
    with pytest.raises(InvalidMessage, match="model process sent an invalid message"):
        msg = receive(ours)
        RowChecker(0, 10, 1, ["x"]).rows(msg)


def test_negative_or_infinite_durations_are_refused(pair: Any) -> None:
    ours, theirs = pair
    for bad in (-1.0, math.inf, math.nan):
        theirs.send_bytes(_chunk(_payload=struct.pack("<dd", bad, 1.0)))
        with pytest.raises(InvalidMessage, match="durations"):
            RowChecker(0, 10, 1, ["x"]).rows(receive(ours))


def test_a_bool_column_holds_only_0_and_1(pair: Any) -> None:
    ours, theirs = pair
    theirs.send_bytes(_chunk(kinds=["b1"], _payload=struct.pack("<dB", 0.5, 7)))
    with pytest.raises(InvalidMessage, match="bool"):
        RowChecker(0, 10, 1, ["x"]).rows(receive(ours))


def test_oversized_messages_are_refused_before_they_are_read(pair: Any) -> None:
    ours, theirs = pair
    theirs._send(struct.pack("!i", -1) + struct.pack("!Q", MAX_MESSAGE_BYTES + 1))
    with pytest.raises(InvalidMessage, match="more than"):
        receive(ours)


def test_random_bytes_never_get_past_receive_and_check(pair: Any) -> None:
    ours, theirs = pair
    rng = random.Random(7)
    good = encode_chunk(_results(0, 8, 5), ["x", "k", "b", "m"])
    for _ in range(300):
        data = bytearray(good)
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        theirs.send_bytes(bytes(data))
        try:
            rows = RowChecker(0, 8, 2, ["x", "k", "b", "m"]).rows(receive(ours))
        except InvalidMessage:
            continue
        # What got through is still data of the declared shape.
        assert all(0 <= r.sequence < 8 and r.status in ("ok", "failed") for r in rows)


def test_names_and_pids_are_checked() -> None:
    assert names_of({"names": ["a", "b_2"]}) == ["a", "b_2"]
    for bad in ([], ["a", "a"], ["1x"], ["x" * 49], [3], "ab"):
        with pytest.raises(InvalidMessage):
            names_of({"names": bad})
    assert pid_of({"pid": 42}) == 42
    for bad_pid in (0, -1, True, "42", 2**40):
        with pytest.raises(InvalidMessage):
            pid_of({"pid": bad_pid})


def test_json_messages_round_trip(pair: Any) -> None:
    ours, theirs = pair
    send(theirs, {"t": "register", "names": ["x"]})
    assert receive(ours) == {"t": "register", "names": ["x"]}
