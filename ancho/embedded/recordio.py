"""RecordIO framing used by the Mesos v1 HTTP APIs.

A RecordIO stream is a sequence of records, each ``<decimal length>\\n<bytes>``. The
records travel inside a chunked HTTP response, and chunk boundaries are unrelated to
record boundaries: a decoder must accept a record split over any number of reads.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["Decoder", "RecordIOError", "encode", "encode_json"]

# A length prefix longer than this cannot be a sane record (Mesos itself caps frames far
# below); refusing it early stops a garbage stream from being buffered forever.
_MAX_PREFIX_DIGITS = 20


class RecordIOError(ValueError):
    """The byte stream is not valid RecordIO."""


def encode(record: bytes) -> bytes:
    """Frame one record."""
    return b"%d\n%s" % (len(record), record)


def encode_json(message: dict[str, Any]) -> bytes:
    """Serialise a JSON message compactly and frame it."""
    return encode(json.dumps(message, separators=(",", ":")).encode("utf-8"))


class Decoder:
    """Incremental decoder: feed it bytes as they arrive, get complete records back."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data`` and return every record it completed, in order."""
        self._buffer += data
        records: list[bytes] = []
        while True:
            newline = self._buffer.find(b"\n", 0, _MAX_PREFIX_DIGITS + 1)
            if newline < 0:
                if len(self._buffer) > _MAX_PREFIX_DIGITS:
                    raise RecordIOError("record length prefix too long")
                return records
            prefix = bytes(self._buffer[:newline])
            if not prefix.isdigit():
                raise RecordIOError(f"invalid record length prefix {prefix!r}")
            length = int(prefix)
            end = newline + 1 + length
            if len(self._buffer) < end:
                return records
            records.append(bytes(self._buffer[newline + 1 : end]))
            del self._buffer[:end]

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a complete record."""
        return len(self._buffer)
