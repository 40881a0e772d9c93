"""The executor's store credential, asked of the scheduler over Mesos framework messages.

The ExecutorInfo (which a Mesos master shows in ``/master/state``) carries the store URL
without credentials and ``ANCHO_STORE_CREDENTIAL=scheduler``; the executor then sends a
:class:`~ancho.messages.CredentialRequest` and the scheduler answers the executors it
launched for the run with the run's own short-lived role. Framework messages may be
lost, and a scheduler that is restarting does not know the run yet, so the request goes
again every :data:`RETRY_S` until an answer comes, for :data:`TIMEOUT_S` at most; then
whatever needed the store (the batch, the run log) fails with the reason.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ancho.errors import StoreError
from ancho.messages import Credential, CredentialRefused, CredentialRequest
from ancho.store import Store, open_store

log = logging.getLogger("ancho.executor")

RETRY_S = 1.0
TIMEOUT_S = 60.0


class StoreCredential:
    """Asks for the run's store URL (with its credential) and keeps the answer."""

    def __init__(self, run_id: str, *, retry_s: float = RETRY_S, timeout_s: float = TIMEOUT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.run_id = run_id
        self.retry_s = retry_s
        self.timeout_s = timeout_s
        self.clock = clock
        self._driver: Any = None
        self._url: str | None = None
        self._refused: str | None = None
        self._changed = threading.Condition()
        self._next_ask = -float("inf")
        #: Requests sent so far (for the log and tests).
        self.asked = 0

    def attach(self, driver: Any) -> None:
        """The executor driver is subscribed: requests can go out now."""
        with self._changed:
            self._driver = driver
            self._changed.notify_all()

    def receive(self, message: Credential | CredentialRefused) -> None:
        """The scheduler's answer (a framework message)."""
        if message.run_id != self.run_id:
            log.warning("store credential for another run (%s) ignored", message.run_id)
            return
        with self._changed:
            if isinstance(message, Credential):
                self._url, self._refused = message.store, None
            else:
                self._refused = message.reason
            self._changed.notify_all()

    def forget(self) -> None:
        """The credential did not work (e.g. re-keyed by a restarted scheduler): ask again."""
        with self._changed:
            self._url = None

    def url(self) -> str:
        """The store URL with the run's credential; blocks until the scheduler answers.

        Several threads may wait at once (the run log, the batch worker); one request
        goes out per ``retry_s`` whoever waits. Raises :class:`StoreError` when no
        credential came within ``timeout_s``.
        """
        deadline = self.clock() + self.timeout_s
        while True:
            with self._changed:
                if self._url is not None:
                    return self._url
                now = self.clock()
                if now >= deadline:
                    refused = self._refused
                    break
                driver = self._driver
                if driver is None or now < self._next_ask:  # not subscribed, or just asked
                    until = deadline if driver is None else min(self._next_ask, deadline)
                    self._changed.wait(until - now)
                    continue
                self._next_ask = now + self.retry_s
                self.asked += 1
            self._ask(driver)  # not under the lock: the answer may come meanwhile
        why = f": the scheduler says {refused}" if refused else ""
        raise StoreError(
            f"no credential for the store of run {self.run_id} from the scheduler in"
            f" {self.timeout_s:.0f} s (asked {self.asked} times by framework message){why}"
        )

    def _ask(self, driver: Any) -> None:
        # Base64 as pymesos' encode_data (not imported here: importing pymesos installs a
        # SIGINT handler, which the executor's main does only once it starts the driver).
        data = base64.b64encode(CredentialRequest(self.run_id).encode()).decode("ascii")
        try:
            driver.sendFrameworkMessage(data)
        except Exception as exc:  # not connected yet, agent restarting: the next try may do
            log.info("store credential request not sent: %s", exc)

    def opener(self) -> Callable[[], Store]:
        """``open_store`` with this credential; a failed open forgets it for the next try."""

        def open_with_credential() -> Store:
            url = self.url()
            try:
                return open_store(url)
            except StoreError:
                self.forget()
                raise

        return open_with_credential
