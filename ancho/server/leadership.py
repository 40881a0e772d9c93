"""``ancho server --zk zk://HOSTS/PATH``: several servers on one store, one scheduling.

Every server serves the whole API from the store; only the leader, elected through
ZooKeeper, runs the scheduler. Servers contend as Mesos masters do (the same
:class:`~ancho.embedded.election.Candidacy`: an ephemeral sequential ``json.info_``
member under PATH holding ``{"url", "pid", "hostname"}``; the lowest leads). So:

- a standby stores a submitted run as QUEUED and a kill as the run's kill request; the
  leader schedules runs it was not given within a second and honours kill requests
  within a tick, so a client may send any request to any server;
- when the leader dies, even by SIGKILL, its znode goes with its ZooKeeper session and
  the next server is elected: it subscribes with the FrameworkID in the store (the
  master fails the framework over to it) and resumes the unfinished runs;
- a leader that loses its ZooKeeper session, or that the master tells "Framework failed
  over", cannot know that it still leads: it stops scheduling and exits with code 1, as
  a Mesos master that loses leadership does (run servers under a supervisor).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from ..embedded.election import Candidacy, ZkUrl
from ..errors import AnchoError

log = logging.getLogger("ancho.server")


class Leadership:
    """This server's candidacy: ``lead()`` runs (in its own thread) once elected;
    ``step_down(why)`` when the candidacy ends other than by :meth:`stop`."""

    def __init__(self, zk: str, url: str, lead: Callable[[], object],
                 step_down: Callable[[str], None]) -> None:  # fmt: skip
        try:
            self.url = ZkUrl.parse(zk)
        except ValueError as exc:
            raise AnchoError(f"--zk: {exc}") from None
        info = {"url": url, "pid": os.getpid(), "hostname": socket.gethostname()}
        self._lead = lead
        self._step_down = step_down
        self._candidacy = Candidacy(self.url, info, self._elected, self._lost)

    def start(self) -> None:
        """Join the election (AnchoError when ZooKeeper cannot be reached)."""
        try:
            self._candidacy.start()
        except Exception as exc:
            raise AnchoError(f"--zk {self.url}: cannot reach ZooKeeper: {exc}") from None
        log.info("contending for leadership among servers at %s", self.url)

    def stop(self) -> None:
        """Withdraw: the next server in line is elected."""
        self._candidacy.stop()

    @property
    def leading(self) -> bool:
        return self._candidacy.leading

    def _elected(self) -> None:
        threading.Thread(target=self._take_over, name="ancho-lead", daemon=True).start()

    def _take_over(self) -> None:
        log.info("elected to lead at %s: starting the scheduler", self.url)
        try:
            self._lead()
        except Exception as exc:
            log.exception("the scheduler did not start")
            self._step_down(f"elected, but the scheduler did not start: {exc}")

    def _lost(self) -> None:
        self._step_down(f"leadership at {self.url} lost (ZooKeeper session or znode gone)")
