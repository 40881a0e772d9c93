"""Following a run's log as it grows, without skipping lines that are stored late.

In Cassandra a line's id is its writer's clock. A follower that asked only for ids above
the last one it saw would skip a line written a moment earlier but stored a moment
later, or written on a machine whose clock is behind. :class:`EventFollower` reads back
``store.late_event_ids`` below the highest id it has seen and drops the lines it has
already returned, so a line is missed only if it is stored later than that (30 s on
Cassandra). SQLite numbers lines as it commits them: nothing is read back there.
"""

from __future__ import annotations

from .base import Event, Store


class EventFollower:
    """``poll()`` returns the lines of ``run_id`` not returned yet, oldest id first."""

    def __init__(self, store: Store, run_id: str, after: int = 0) -> None:
        self.store, self.run_id = store, run_id
        self._after = after  # the caller has every line up to here (or wants none)
        self._high = after
        self._seen: set[int] = set()

    def poll(self) -> list[Event]:
        """The lines stored since the last poll (late ones included)."""
        floor = max(self._after, self._high - self.store.late_event_ids)
        new = [e for e in self.store.iter_events(self.run_id, floor) if e.id not in self._seen]
        new.sort(key=lambda e: e.id)
        for e in new:
            self._seen.add(e.id)
            self._high = max(self._high, e.id)
        lowest = max(self._after, self._high - self.store.late_event_ids)
        self._seen = {i for i in self._seen if i > lowest}  # what the next read can return
        return new
