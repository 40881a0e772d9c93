"""A small threaded HTTP/1.1 server with keep-alive and chunked RecordIO event streams.

Routes return either a plain :class:`Response` or a :class:`StreamResponse`; for a
stream the handler thread becomes the subscriber's writer: it drains the stream's
queue into chunks, so producers (holding the cluster lock) only ever enqueue.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import select
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .recordio import encode_json

__all__ = ["EventStream", "HttpServer", "Request", "Response", "Route", "StreamResponse"]

logger = logging.getLogger("ancho.embedded.http")

# Records above this size are spread over several chunks; clients must reassemble them
# (Mesos makes no promise that a chunk holds exactly one record).
MAX_CHUNK = 64 * 1024
# How often a writer with nothing to send checks whether its peer went away.
_POLL_S = 0.1


@dataclass(slots=True)
class Request:
    """An HTTP request as routes see it."""

    method: str
    path: str
    headers: Message
    body: bytes
    target: str = ""  # the path with its query, as requested


@dataclass(slots=True)
class Response:
    """A complete (non-streaming) response."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class EventStream:
    """The outgoing event queue of one subscriber (a scheduler or an executor).

    ``send`` and ``close`` never block, so they may be called with locks held. When
    the stream ends, for whatever reason, ``on_close`` is called once, without locks.
    """

    def __init__(self, stream_id: str, on_close: Callable[[EventStream], None] | None = None):
        self.stream_id = stream_id
        self.on_close = on_close
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._closing = False
        self._finished = threading.Event()
        self._lock = threading.Lock()

    def send(self, event: dict[str, Any]) -> None:
        """Queue one event (dropped silently once the stream is closing)."""
        with self._lock:
            if not self._closing:
                self._queue.put(encode_json(event))

    def close(self) -> None:
        """End the stream after the events already queued."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._queue.put(None)

    @property
    def closed(self) -> bool:
        """True once closing was requested or the peer went away."""
        return self._closing or self._finished.is_set()

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Block until the writer has ended."""
        return self._finished.wait(timeout)

    def _next(self, timeout: float) -> bytes | None:
        return self._queue.get(timeout=timeout)

    def _finish(self) -> None:
        with self._lock:
            self._closing = True
        if self._finished.is_set():
            return
        self._finished.set()
        if self.on_close is not None:
            try:
                self.on_close(self)
            except Exception:
                logger.exception("stream close callback failed")


@dataclass(slots=True)
class StreamResponse:
    """A ``200 OK`` chunked response fed by an :class:`EventStream`."""

    stream: EventStream
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)


Route = Callable[[Request], Response | StreamResponse]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "ancho-embedded-mesos"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        path = self.path.split("?", 1)[0]
        route = self.server.routes.get(path)
        if route is None:
            result: Response | StreamResponse = Response(404, b"No such endpoint\n")
        else:
            try:
                result = route(Request(self.command, path, self.headers, body, self.path))
            except Exception:
                logger.exception("error handling %s %s", self.command, path)
                result = Response(500, b"Internal error\n")
        if isinstance(result, StreamResponse):
            self._stream(result)
        else:
            self._respond(result)

    def _respond(self, response: Response) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if response.body and self.command != "HEAD":
            self.wfile.write(response.body)

    def _stream(self, response: StreamResponse) -> None:
        stream = response.stream
        self.close_connection = True
        try:
            self.send_response(200)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Cache-Control", "no-cache")
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            while True:
                try:
                    record = stream._next(_POLL_S)
                except queue.Empty:
                    if self._peer_gone():
                        break
                    continue
                if record is None:
                    self.wfile.write(b"0\r\n\r\n")
                    break
                for start in range(0, len(record), MAX_CHUNK):
                    piece = record[start : start + MAX_CHUNK]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        except OSError as exc:
            logger.debug("stream %s write failed: %s", stream.stream_id, exc)
        finally:
            stream._finish()

    def _peer_gone(self) -> bool:
        # The subscriber never sends anything after its request, so readability means
        # EOF (or a reset): that is how a dropped stream is noticed without traffic.
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            peeked: bytes = self.connection.recv(1, socket.MSG_PEEK)
            return peeked == b""
        except OSError:
            return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], routes: dict[str, Route]) -> None:
        super().__init__(address, _Handler)
        self.routes = routes
        self._conn_lock = threading.Lock()
        self._connections: dict[socket.socket, threading.Thread] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        # Threads are tracked here (not by ThreadingMixIn) so stop() can close idle
        # keep-alive connections and join every handler thread.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="ancho-embedded-http",
            daemon=True,
        )
        with self._conn_lock:
            self._connections[request] = thread
        thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response (an executor killed, a driver stopping) is
        # ordinary on a cluster: Mesos logs it and carries on, and so does this server,
        # through logging rather than a traceback on stderr.
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError):
            logger.debug("client %s went away: %s", client_address, error)
        else:
            logger.exception("error serving %s", client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.pop(request, None)
        super().shutdown_request(request)

    def close_all(self, timeout: float) -> None:
        with self._conn_lock:
            connections = dict(self._connections)
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in connections.values():
            thread.join(timeout)


class HttpServer:
    """Serve ``routes`` (path → route) on ``host:port`` in a background thread."""

    def __init__(self, host: str, port: int, routes: dict[str, Route]) -> None:
        self._server = _Server((host, port), routes)
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> None:
        """Start accepting connections."""
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="ancho-embedded-http-accept",
            daemon=True,
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, close every connection and join the handler threads."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout)
            self._thread = None
        self._server.close_all(timeout)
        self._server.server_close()
