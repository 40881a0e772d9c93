"""Result stores, chosen by URL: ``sqlite:///path/to.db`` (default) or ``cassandra://…``."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import StoreError
from .base import (
    TERMINAL_STATES,
    BatchRecord,
    Counts,
    Event,
    ExperimentRecord,
    RunRecord,
    RunState,
    Store,
    UserRecord,
)
from .sqlite import SQLiteStore

#: Where ``ancho run`` keeps results when neither --store nor ANCHO_STORE says otherwise.
DEFAULT_STORE_PATH = Path(".ancho") / "ancho.db"

__all__ = [
    "DEFAULT_STORE_PATH",
    "TERMINAL_STATES",
    "BatchRecord",
    "Counts",
    "Event",
    "ExperimentRecord",
    "RunRecord",
    "RunState",
    "Store",
    "UserRecord",
    "default_store_url",
    "open_store",
]


def default_store_url() -> str:
    """``ANCHO_STORE``, else the SQLite file under ``./.ancho`` (as an absolute URL)."""
    env = os.environ.get("ANCHO_STORE")
    if env:
        return env
    return f"sqlite:///{DEFAULT_STORE_PATH.resolve()}"


def open_store(url: str | None = None) -> Store:
    """Open the store a URL names; a bare path means an SQLite file."""
    url = url or default_store_url()
    if url.startswith("sqlite:///"):
        return SQLiteStore(url.removeprefix("sqlite:///") or DEFAULT_STORE_PATH)
    if url.startswith("sqlite://"):
        raise StoreError(f"{url}: SQLite URLs look like sqlite:///path/to.db")
    if url.startswith("cassandra://"):
        from .cassandra import CassandraStore  # late: the driver takes ~0.3 s to import

        return CassandraStore(url)
    if "://" not in url:
        return SQLiteStore(url)
    raise StoreError(f"{url}: unknown store URL (use sqlite:///path or cassandra://host/keyspace)")
