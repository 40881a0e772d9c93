"""The server context's bookkeeping without a server: sequence rate and token lookups."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from ancho.server.context import ServerContext
from ancho.server.stores import RoutingStore
from ancho.store.sqlite import SQLiteStore
from ancho.users import add_user, revoke_user


@pytest.fixture
def context(tmp_path: Path) -> ServerContext:
    return ServerContext(store=RoutingStore(SQLiteStore(tmp_path / "s.db")))


def test_rate_is_measured_over_at_least_a_second(context: ServerContext) -> None:
    assert context.rate(100) == 0.0  # the first sample only starts the clock
    assert context.rate(150) == 0.0  # too soon to say
    time.sleep(1.05)
    rate = context.rate(1100)
    assert 900 < rate < 1000  # 1000 sequences in a little over a second
    assert context.rate(1100) == rate  # held until the next interval


def test_new_tokens_work_at_once_and_revoked_ones_within_the_ttl(
    context: ServerContext,
) -> None:
    alice = add_user(context.store.admin, "alice")
    assert context.user_for_token("nonsense") is None
    time.sleep(0.3)
    bob = add_user(context.store.admin, "bob")
    found = context.user_for_token(bob["token"])
    assert found is not None and found.name == "bob"
    assert context.user_for_token(alice["token"]) is not None
    revoke_user(context.store.admin, "alice")
    time.sleep(2.1)
    assert context.user_for_token(alice["token"]) is None
