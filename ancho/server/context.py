"""What every request handler of the server needs: stores, the scheduler, limits."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..store import RunRecord, UserRecord
from ..users import hash_token
from .stores import RoutingStore

#: Uploads larger than this are refused with 413 (``ANCHO_MAX_UPLOAD_MB`` to change).
DEFAULT_MAX_UPLOAD_BYTES = 64 * 2**20
#: How long a token lookup is trusted: a revoked token stops working within this.
TOKEN_TTL_S = 2.0
MISS_RELOAD_S = 0.25


@dataclass
class ServerContext:
    """The server's state shared by its handlers (one per process)."""

    store: RoutingStore
    submit: Callable[[RunRecord], None] = lambda _run: None
    kill: Callable[[str], None] = lambda _run_id: None
    scheduler_stats: Callable[[], dict[str, float]] = dict
    #: The built-in statistics of an ended run, recomputed by the Spark job.
    recompute: Callable[[RunRecord], dict[str, Any]] = lambda _run: {}
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    #: Whether this server runs the scheduler (False: a standby, see ``leadership``).
    leading: bool = True
    follow_poll_s: float = 0.25
    _rate: tuple[float, int, float] = (0.0, 0, 0.0)  # (when, sequences done, per second)
    _tokens: dict[str, UserRecord] = field(default_factory=dict)
    _tokens_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def user_for_token(self, token: str) -> UserRecord | None:
        """The live user holding ``token``.

        Users are re-read at most every TOKEN_TTL_S (so a revoked token stops working
        within that), and at once, at most every MISS_RELOAD_S, for an unknown token (so a
        new user's token works at once without letting bad tokens hammer the store).
        """
        digest = hash_token(token)
        now = time.monotonic()
        with self._lock:
            age = now - self._tokens_at
            if age > TOKEN_TTL_S or (digest not in self._tokens and age > MISS_RELOAD_S):
                users = self.store.list_users()
                self._tokens = {u.token_sha256: u for u in users if not u.revoked}
                self._tokens_at = now
            return self._tokens.get(digest)

    def rate(self, done: int) -> float:
        """Sequences stored per second, over the last interval of at least a second."""
        now = time.monotonic()
        with self._lock:
            when, before, value = self._rate
            if not when:
                self._rate = (now, done, 0.0)
            elif now - when >= 1.0:
                value = max(done - before, 0) / (now - when)
                self._rate = (now, done, value)
            return value

    def extra(self) -> dict[str, Any]:
        """Scheduler figures for /metrics."""
        return dict(self.scheduler_stats())
