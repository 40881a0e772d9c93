"""Leader election of embedded masters through ZooKeeper, laid out as Mesos lays it out.

Each contending master creates an ephemeral, sequential znode ``json.info_<seq>`` under
the cluster's path (``/mesos``) holding its MasterInfo as JSON. The member with the
lowest sequence number leads; the others are standbys. A master whose ZooKeeper session
expires loses its znode and with it any claim to lead. Frameworks find the leader as
they find Mesos' (pymesos' ``zk://…/mesos`` detection reads the lowest member's
MasterInfo), and agents and standby masters follow it with :class:`LeaderWatch`.

Mesos' groups also hold protobuf ``info_`` members (older masters) and ``log_replicas``
(the replicated log); both are recognised, only ``json.info_`` is written here.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import NoNodeError
from kazoo.recipe.watchers import ChildrenWatch

logger = logging.getLogger("ancho.embedded.election")

JSON = dict[str, Any]
_MEMBER_PREFIXES = ("json.info_", "info_")
_SESSION_TIMEOUT_S = 4.0  # a dead master's znode goes within seconds, as tests want
#: How a client reconnects after losing ZooKeeper: at least every second, as ZooKeeper's
#: C client (Mesos') keeps trying. kazoo's default backoff doubles up to an hour, so after
#: an outage of ten seconds a client could wait half a minute more to find out, and by
#: then its session would have expired although it could have been kept.
_RECONNECT = {"max_tries": -1, "delay": 0.1, "backoff": 2, "max_delay": 1.0}


@dataclass(slots=True, frozen=True)
class ZkUrl:
    """``zk://host:port[,host:port…]/path``."""

    hosts: str
    path: str

    @classmethod
    def parse(cls, url: str) -> ZkUrl:
        """Parse a ``zk://`` URL; ValueError names what is wrong."""
        parts = urlsplit(url)
        if parts.scheme != "zk" or not parts.netloc or parts.path in ("", "/"):
            raise ValueError(f"{url!r} is not a zk://HOST:PORT[,HOST:PORT...]/PATH URL")
        if "@" in parts.netloc:
            raise ValueError(f"{url!r}: ZooKeeper credentials in the URL are not supported")
        return cls(parts.netloc, parts.path.rstrip("/"))

    def __str__(self) -> str:
        return f"zk://{self.hosts}{self.path}"


def _sequence(name: str) -> int:
    return int(name.rsplit("_", 1)[1])


def leader_member(children: list[str]) -> str | None:
    """The member that leads: the lowest sequence among Mesos' member znodes."""
    members = [c for c in children if c.startswith(_MEMBER_PREFIXES)]
    return min(members, key=_sequence) if members else None


class LeaderWatch:
    """Follows who leads under ``url``; ``on_change(info)`` gets MasterInfo or None.

    ``on_change`` runs on kazoo's event thread, at start and after every change of
    leader; ``leader`` is the latest MasterInfo (None while there is no leader).
    """

    def __init__(self, url: ZkUrl, on_change: Callable[[JSON | None], None] | None = None):
        self.url = url
        self._on_change = on_change
        self._client = KazooClient(
            hosts=url.hosts, timeout=_SESSION_TIMEOUT_S, connection_retry=_RECONNECT
        )
        self._lock = threading.Lock()
        self._member: str | None = None
        self._stopped = False
        self.leader: JSON | None = None

    def start(self, timeout: float = 15.0) -> None:
        """Connect and start watching (raises kazoo's timeout if ZooKeeper is away)."""
        self._client.start(timeout=timeout)
        self._client.ensure_path(self.url.path)
        ChildrenWatch(self._client, self.url.path, self._children)

    def stop(self) -> None:
        """Stop watching and close the session."""
        self._stopped = True
        self._client.stop()
        self._client.close()

    @property
    def client(self) -> KazooClient:
        return self._client

    def _children(self, children: list[str]) -> bool:
        if self._stopped:
            return False
        member = leader_member(children)
        info: JSON | None = None
        if member is not None:
            try:
                data, _ = self._client.get(f"{self.url.path}/{member}")
                info = json.loads(data) if member.startswith("json.") else {"id": member}
            except (NoNodeError, ValueError):
                info = None  # gone meanwhile, or not JSON: the next change will tell
        with self._lock:
            changed = member != self._member
            self._member, self.leader = member, info
        if changed and self._on_change is not None:
            self._on_change(info)
        return True


class Candidacy(LeaderWatch):
    """A master contending to lead: its MasterInfo as an ephemeral sequential member.

    ``on_elected()`` runs once when this master becomes the leader; ``on_lost()`` once
    when it stops being the leader or its session is lost (Mesos' master then exits:
    "Lost leadership... committing suicide!").
    """

    def __init__(
        self,
        url: ZkUrl,
        master_info: JSON,
        on_elected: Callable[[], None],
        on_lost: Callable[[], None],
        on_change: Callable[[JSON | None], None] | None = None,
    ):
        super().__init__(url, on_change)
        self._info = master_info
        self._on_elected = on_elected
        self._on_lost = on_lost
        self._mine: str | None = None
        self._leading = False
        self._lost = False

    @property
    def leading(self) -> bool:
        return self._leading

    def start(self, timeout: float = 15.0) -> None:
        self._client.start(timeout=timeout)
        self._client.add_listener(self._state)
        path = self._client.create(
            f"{self.url.path}/json.info_",
            json.dumps(self._info).encode(),
            ephemeral=True,
            sequence=True,
            makepath=True,
        )
        self._mine = path.rsplit("/", 1)[1]
        logger.info("contending for leadership as %s", self._mine)
        ChildrenWatch(self._client, self.url.path, self._children)

    def stop(self) -> None:
        """Withdraw (the znode goes with the session) and close."""
        self._stopped = True
        self._client.remove_listener(self._state)
        self._client.stop()
        self._client.close()

    def _children(self, children: list[str]) -> bool:
        keep = super()._children(children)
        if self._stopped or self._mine is None:
            return keep
        if self._mine not in children:
            self._lose("its membership znode is gone")
            return False
        if leader_member(children) == self._mine and not self._leading and not self._lost:
            self._leading = True
            logger.info("elected leader as %s", self._mine)
            self._on_elected()
        return keep

    def _state(self, state: str) -> None:
        # SUSPENDED may still recover with the session; LOST means the znode is gone.
        if state == KazooState.LOST and not self._stopped:
            self._lose("its ZooKeeper session expired")

    def _lose(self, why: str) -> None:
        if self._lost:
            return
        self._lost = True
        was_leading, self._leading = self._leading, False
        logger.warning("candidacy %s ended: %s (was leading: %s)", self._mine, why, was_leading)
        self._on_lost()
