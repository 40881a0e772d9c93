"""Users: a name, an API token (stored hashed, shown once) and a store of their own.

With Cassandra, ``add_user`` on the admin store creates the user's keyspace and a login
role with SELECT and MODIFY on that keyspace only; the user's store URL carries that
role, so executors of the user's runs can reach only the user's data. With SQLite there
is one file: the user gets a token and shares the store.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from typing import Any

from .errors import AnchoError
from .store import Store, UserRecord

USER_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}\Z")


def hash_token(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(store: Store, name: str) -> dict[str, Any]:
    """Create a user; return ``{"user", "store", "token"}`` (the token is shown only here)."""
    if not USER_NAME.match(name):
        raise AnchoError(f"user name {name!r}: must match [a-z][a-z0-9_]{{0,30}}")
    if any(u.name == name and not u.revoked for u in store.list_users()):
        raise AnchoError(f"user {name!r} exists already (revoke it first to replace it)")
    token = secrets.token_urlsafe(32)
    url = store.url
    provision = getattr(store, "provision_user", None)
    if provision is not None:
        url = provision(name, secrets.token_urlsafe(18))
    store.put_user(UserRecord(name, hash_token(token), url, time.time()))
    return {"user": name, "store": url, "token": token}


def list_users(store: Store) -> list[dict[str, Any]]:
    """Users without secrets: name, state, creation time, keyspace."""
    return [
        {
            "user": u.name,
            "revoked": u.revoked,
            "created_at": u.created_at,
            "store": re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", u.store),
        }
        for u in store.list_users()
    ]


def revoke_user(store: Store, name: str) -> None:
    """Revoke a user's token and (Cassandra) stop their role from logging in."""
    users = {u.name: u for u in store.list_users()}
    if name not in users:
        raise AnchoError(f"no user {name!r}")
    user = users[name]
    store.put_user(UserRecord(user.name, user.token_sha256, user.store, user.created_at, True))
    disable = getattr(store, "disable_role", None)
    if disable is not None:
        disable(name)
