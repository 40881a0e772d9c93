"""Users: a name, an API token (stored hashed, shown once) and a store of their own.

With Cassandra, ``add_user`` on the admin store creates the user's keyspace and a login
role with SELECT and MODIFY on that keyspace only; the user's store URL carries that
role, so executors of the user's runs can reach only the user's data. With SQLite there
is one file: the user gets a token and shares the store.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from typing import Any

from .errors import AnchoError
from .store import Store, UserRecord

USER_NAME = re.compile(r"[a-z][a-z0-9_]{0,30}\Z")
#: The store's meta key holding every user's cpu quota, as JSON ``{name: max_cpus}``:
#: the scheduler reads it in one go every few seconds.
QUOTAS_KEY = "quotas"


def hash_token(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def add_user(store: Store, name: str, max_cpus: float | None = None) -> dict[str, Any]:
    """Create a user; return ``{"user", "store", "token"}`` (the token is shown only here).
    ``max_cpus``: the most cpus the user's executors may hold together."""
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
    if max_cpus is not None:
        set_quota(store, name, max_cpus)
    return {"user": name, "store": url, "token": token}


def quotas(store: Store) -> dict[str, float]:
    """Every user's cpu quota (users without one are not named)."""
    raw = store.get_meta(QUOTAS_KEY)
    return {str(k): float(v) for k, v in json.loads(raw).items()} if raw else {}


def set_quota(store: Store, name: str, max_cpus: float | None) -> None:
    """Cap the cpus the user's executors hold together, or (None) lift the cap. A running
    scheduler applies it within seconds: over it, executors stop at batch boundaries."""
    if not any(u.name == name and not u.revoked for u in store.list_users()):
        raise AnchoError(f"no user {name!r}")
    if max_cpus is not None and not max_cpus > 0:
        raise AnchoError(f"--max-cpus {max_cpus:g}: must be a positive number of cpus")
    table = quotas(store)
    if max_cpus is None:
        table.pop(name, None)
    else:
        table[name] = max_cpus
    store.set_meta(QUOTAS_KEY, json.dumps(table, sort_keys=True) if table else None)


def list_users(store: Store) -> list[dict[str, Any]]:
    """Users without secrets: name, state, cpu quota, creation time, keyspace."""
    caps = quotas(store)
    return [
        {
            "user": u.name,
            "revoked": u.revoked,
            "max_cpus": caps.get(u.name),
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
