"""Fair shares between users: dominant resource fairness, with per-user cpu quotas.

A user's *dominant share* is the larger of its cpus and its memory over the cluster's
(as Mesos' DRF sorter ranks frameworks and Cook ranks users). Offers go first to the
user with the smallest dominant share; the *fair level* is the max-min fair dominant
share given what each user can use (water-filling), and a user above it while another
is below it gives executors back at their next batch boundary (``SchedulerState``).

The cluster's size is what a framework can tell of it: the free resources each agent
last offered plus what Ancho's executors hold. Pure bookkeeping, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

_EPS = 1e-9


@dataclass(slots=True)
class UserShare:
    """What one user's active executors hold, and the user's cpu quota (None: none)."""

    cpus: float = 0.0
    mem_mb: float = 0.0
    max_cpus: float | None = None


class Shares:
    """Per-user holdings, the cluster's estimated size, and DRF arithmetic."""

    def __init__(self) -> None:
        self.users: dict[str, UserShare] = {}
        self._free: dict[str, tuple[float, float]] = {}
        self._free_cpus = 0.0
        self._free_mem = 0.0
        self._held_cpus = 0.0
        self._held_mem = 0.0

    def user(self, name: str) -> UserShare:
        """The user's record (created on first use)."""
        share = self.users.get(name)
        if share is None:
            share = self.users[name] = UserShare()
        return share

    # --- holdings --------------------------------------------------------------------
    def take(self, name: str, cpus: float, mem_mb: float) -> None:
        """An executor of the user's started (or was found running)."""
        share = self.user(name)
        share.cpus += cpus
        share.mem_mb += mem_mb
        self._held_cpus += cpus
        self._held_mem += mem_mb

    def give_back(self, name: str, cpus: float, mem_mb: float) -> None:
        """An executor of the user's stops (or is gone)."""
        share = self.user(name)
        share.cpus = max(0.0, share.cpus - cpus)
        share.mem_mb = max(0.0, share.mem_mb - mem_mb)
        self._held_cpus = max(0.0, self._held_cpus - cpus)
        self._held_mem = max(0.0, self._held_mem - mem_mb)

    def set_quota(self, name: str, max_cpus: float | None) -> None:
        """Cap the cpus the user's executors may hold together (None: no cap)."""
        self.user(name).max_cpus = max_cpus

    def within_quota(self, name: str, cpus: float) -> bool:
        """Whether the user may start an executor of ``cpus`` more."""
        share = self.user(name)
        return share.max_cpus is None or share.cpus + cpus <= share.max_cpus + _EPS

    # --- the cluster -------------------------------------------------------------------
    def free(self, agent_id: str, cpus: float, mem_mb: float) -> None:
        """What the agent has free now (its offer, less what Ancho took of it)."""
        old_cpus, old_mem = self._free.get(agent_id, (0.0, 0.0))
        self._free[agent_id] = (cpus, mem_mb)
        self._free_cpus += cpus - old_cpus
        self._free_mem += mem_mb - old_mem

    def forget_agent(self, agent_id: str) -> None:
        """The agent is gone: its free resources are no longer the cluster's."""
        cpus, mem = self._free.pop(agent_id, (0.0, 0.0))
        self._free_cpus -= cpus
        self._free_mem -= mem

    def largest_free(self) -> tuple[float, float]:
        """The most cpus, and the most memory, any one agent has free."""
        if not self._free:
            return 0.0, 0.0
        return max(c for c, _ in self._free.values()), max(m for _, m in self._free.values())

    def total(self) -> tuple[float, float]:
        """The cluster's estimated (cpus, mem_mb): free plus held by Ancho."""
        return self._free_cpus + self._held_cpus, self._free_mem + self._held_mem

    # --- fairness ------------------------------------------------------------------------
    def dominant(self, name: str) -> float:
        """The user's dominant share of the cluster."""
        share = self.users.get(name)
        return 0.0 if share is None else self.dominant_of(share.cpus, share.mem_mb)

    def dominant_of(self, cpus: float, mem_mb: float) -> float:
        """The dominant share that (cpus, mem_mb) would be."""
        total_cpus, total_mem = self.total()
        return max(cpus / max(total_cpus, _EPS), mem_mb / max(total_mem, _EPS))

    def quota_share(self, name: str) -> float:
        """The dominant share the user's quota allows (inf: no quota)."""
        share = self.user(name)
        if share.max_cpus is None:
            return math.inf
        return share.max_cpus / max(self.total()[0], _EPS)


def fair_level(demands: dict[str, float]) -> float:
    """The max-min fair dominant share for users who could use ``demands`` (dominant
    shares, inf for as much as there is) of a cluster of share 1: water-filling, so a
    user who needs less than an equal part leaves the rest to the others."""
    left, users = 1.0, len(demands)
    for demand in sorted(demands.values()):
        level = left / users
        if demand >= level:
            return level
        left -= demand
        users -= 1
    return math.inf  # everyone has all they can use
