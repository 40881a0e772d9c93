"""Per-run store credentials: what executors and the summary job of a run log in with.

No long-lived secret goes into an ExecutorInfo (a Mesos master shows those, environment
included, in ``/master/state``), an environment or a command line. Executors get the
run owner's store URL *without* credentials (:meth:`RunCredentials.public_url`) and ask
the scheduler for the rest over Mesos framework messages; the answer
(:meth:`RunCredentials.store_url`) carries a Cassandra login role of the run's own,
``ancho_run_<run id>``, with a random password, allowed only what a run needs in the
owner's keyspace (``ancho.store.cassandra.RUN_GRANTS``). The role is made the first
time the run needs it and dropped when the run ends (:meth:`RunCredentials.revoke`).
The password lives only in this process: a scheduler restarted mid-run re-keys the
role when the run first needs it again.

SQLite stores and Cassandra without authentication have no secret: their URL is
used as is. When the store's own role cannot create roles (``ancho run`` with a user's
URL), the run falls back to the owner's credential, still sent only by framework
message, and says so in the run's log.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from urllib.parse import quote

from ancho.errors import AnchoError, StoreError
from ancho.store import Store
from ancho.store.cassandra import CassandraStore, CassandraURL

log = logging.getLogger("ancho.scheduler")

#: Every run role's name starts so (and only run roles' do).
ROLE_PREFIX = "ancho_run_"
#: The executor environment's ANCHO_STORE_CREDENTIAL value meaning "ask the scheduler".
ASK_SCHEDULER = "scheduler"
#: A role whose drop failed is tried again this often, this many times in all.
_RETRY_DROP_S = 10.0
_DROP_TRIES = 30
_PLAIN_ID = re.compile(r"[a-z0-9_]{1,36}\Z")


def role_name(run_id: str) -> str:
    """The Cassandra role of a run (a digest when the run id is no plain name)."""
    if _PLAIN_ID.match(run_id):
        return ROLE_PREFIX + run_id
    return ROLE_PREFIX + hashlib.sha256(run_id.encode()).hexdigest()[:32]


def _secret_in(url: str) -> CassandraURL | None:
    """The parsed URL when it carries a password, else None (nothing to keep secret)."""
    if not url.startswith("cassandra://"):
        return None
    parsed = CassandraURL.parse(url)
    return parsed if parsed.password else None


def _url(config: CassandraURL, username: str | None, password: str | None) -> str:
    hosts = ",".join(config.hosts)
    auth = f"{quote(username, safe='')}:{quote(password or '', safe='')}@" if username else ""
    return f"cassandra://{auth}{hosts}:{config.port}/{config.keyspace}"


class RunCredentials:
    """Issues and revokes the store credential of each run.

    ``owner_url(run_id)`` is the run owner's store URL (with the owner's role);
    ``admin`` is a store whose role may create roles (the server's admin store).
    Thread-safe: the framework's callbacks and the summary thread both use it.
    """

    def __init__(self, owner_url: Callable[[str], str], admin: Store,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.owner_url = owner_url
        self.admin = admin
        self.clock = clock
        self._lock = threading.Lock()
        self._issued: dict[str, str] = {}
        self._public: dict[str, tuple[str, bool]] = {}
        self._roles: dict[str, str] = {}  # run id -> role made for it
        self._to_drop: dict[str, tuple[float, int]] = {}  # role -> (next try, tries so far)
        #: Runs whose executors got the owner's credential (the admin cannot make roles).
        self.fallbacks: set[str] = set()

    def public_url(self, run_id: str) -> tuple[str, bool]:
        """The run's store URL with no credential in it (what an ExecutorInfo carries),
        and whether executors must ask the scheduler for the credential."""
        with self._lock:
            known = self._public.get(run_id)
        if known is None:
            url = self.owner_url(run_id)
            parsed = _secret_in(url)
            known = (url, False) if parsed is None else (_url(parsed, None, None), True)
            with self._lock:
                self._public[run_id] = known
        return known

    def store_url(self, run_id: str) -> str:
        """The run's store URL with the run's own role, making the role on first use."""
        with self._lock:
            known = self._issued.get(run_id)
            if known is not None:
                return known
            url = self.owner_url(run_id)
            owner = _secret_in(url)
            if owner is None:
                self._issued[run_id] = url
                return url
            role, password = role_name(run_id), secrets.token_urlsafe(24)
            maker = getattr(self.admin, "create_run_role", None)
            try:
                if maker is None:
                    raise StoreError(f"{type(self.admin).__name__} cannot create roles")
                maker(role, password, owner.keyspace)
            except StoreError as exc:
                if maker is not None and "not authorised" not in exc.message:
                    raise  # e.g. the store is away: the executor asks again in a second
                log.warning("run %s: no role of its own (%s): executors use the owner's",
                            run_id, exc.message)  # fmt: skip
                self.fallbacks.add(run_id)
                self._issued[run_id] = url
                return url
            self._roles[run_id] = role
            self._to_drop.pop(role, None)
            issued = self._issued[run_id] = _url(owner, role, password)
            log.info("run %s: store role %s made", run_id, role)
            return issued

    def revoke(self, run_id: str) -> None:
        """The run ended: drop its role (tried again later if the store is away)."""
        with self._lock:
            self._issued.pop(run_id, None)
            self._public.pop(run_id, None)
            role = self._roles.pop(run_id, None)
            if role is None and run_id not in self.fallbacks and self._may_have_role(run_id):
                role = role_name(run_id)  # perhaps made by this scheduler before a restart
            self.fallbacks.discard(run_id)
            if role is not None:
                self._to_drop[role] = (0.0, 0)
        self.retry_drops()

    def retry_drops(self) -> None:
        """Drop the roles whose drop failed before (at most every few seconds each)."""
        now = self.clock()
        with self._lock:
            due = [(r, tries) for r, (when, tries) in self._to_drop.items() if when <= now]
        for role, tries in due:
            try:
                self._drop(role)
            except AnchoError as exc:
                with self._lock:
                    if tries + 1 < _DROP_TRIES:
                        self._to_drop[role] = (now + _RETRY_DROP_S, tries + 1)
                        log.warning("store role %s not dropped yet: %s", role, exc)
                    else:  # the next start-up sweep drops it
                        self._to_drop.pop(role, None)
                        log.error("store role %s not dropped: %s", role, exc)
                continue
            with self._lock:
                self._to_drop.pop(role, None)
            log.info("store role %s dropped", role)

    def sweep(self, ended: Callable[[str], bool]) -> list[str]:
        """Drop left-over run roles whose run ``ended(run_id)`` says is over (e.g. runs
        that ended while this scheduler was down). Runs this store does not know are
        left alone: another scheduler may own them."""
        lister = getattr(self.admin, "list_roles", None)
        if lister is None or not self._can_drop():
            return []
        dropped = []
        for role in lister(ROLE_PREFIX):
            run_id = role.removeprefix(ROLE_PREFIX)
            try:
                if not ended(run_id):
                    continue
            except AnchoError:
                continue
            self._drop(role)
            dropped.append(role)
        if dropped:
            log.info("dropped the store roles of ended runs: %s", ", ".join(dropped))
        return dropped

    def _can_drop(self) -> bool:
        return isinstance(self.admin, CassandraStore)

    def _may_have_role(self, run_id: str) -> bool:
        try:
            return self._can_drop() and _secret_in(self.owner_url(run_id)) is not None
        except AnchoError:
            return False

    def _drop(self, role: str) -> None:
        drop = getattr(self.admin, "drop_role", None)
        if drop is not None:
            drop(role)
