"""Offers: which resources are offered to whom, refusal filters, and allocation.

The allocator owns the outstanding offers; the frameworks themselves (shared with
the master, which adds and removes them) carry their offer ids, filters and
suppression. Everything runs under the cluster lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .frameworks import Framework, OfferFilter
from .protocol import JSON, event
from .resources import Resources

if TYPE_CHECKING:
    from .agents import AgentRecord

__all__ = ["Allocator", "Offer"]

# Mesos' minimum allocatable amounts (master/constants.hpp): smaller leftovers are not
# worth an offer.
_MIN_CPUS = 0.01
_MIN_MEM_MB = 32.0


@dataclass(slots=True)
class Offer:
    """An outstanding offer of ``resources`` to one framework."""

    offer_id: str
    framework_id: str
    resources: Resources
    #: When Mesos' --offer_timeout rescinds it (None: never).
    expires: float | None = None
    agent_id: str = ""


class Allocator:
    """Outstanding offers and the allocation of free agent resources to frameworks."""

    def __init__(
        self,
        frameworks: dict[str, Framework],
        *,
        master_id: str,
        host: str,
        port: int,
        default_refuse_s: float,
        offer_timeout_s: float | None = None,
    ) -> None:
        # The master's own dict: frameworks it adds or removes are seen here at once.
        self._frameworks = frameworks
        self._master_id = master_id
        self._host = host
        self._port = port
        self._default_refuse_s = default_refuse_s
        self._offer_timeout_s = offer_timeout_s
        self._offers: dict[str, Offer] = {}
        self._next_offer = 0

    # ------------------------------------------------------------ scheduler calls
    def decline(self, framework: Framework, offer_ids: list[Any], filters: Any) -> None:
        """DECLINE: drop the framework's named offers and filter their resources."""
        for offer_id in offer_ids:
            offer = self._offers.get(offer_id.get("value", ""))
            if offer is not None and offer.framework_id == framework.framework_id:
                agent_id = offer.agent_id
                self._remove_offer(offer)
                self.add_filter(framework, offer.resources, filters, agent_id=agent_id)

    def take(self, framework: Framework, offer_ids: list[Any]) -> tuple[Resources, str | None, str]:
        """ACCEPT: consume the named offers; return their pooled resources, a problem
        and the agent they are on.

        Every valid offer is consumed even when another is not, as in Mesos: the
        problem (the last one found) then invalidates the whole call and the pooled
        resources simply become available again. Offers of different agents cannot
        be pooled.
        """
        pool = Resources()
        problem: str | None = None
        offers: list[Offer] = []
        seen: set[str] = set()
        for offer_id in offer_ids:
            value = offer_id.get("value", "") if isinstance(offer_id, dict) else ""
            offer = self._offers.get(value)
            if value in seen:
                problem = f"Offer {value} appears more than once"
            elif offer is None or offer.framework_id != framework.framework_id:
                problem = f"Offer {value} is no longer valid"
            else:
                offers.append(offer)
            seen.add(value)
        if not offer_ids:
            problem = "No offers specified"
        agents = {offer.agent_id for offer in offers}
        if len(agents) > 1:
            problem = "Aggregated offers must belong to one single agent"
        for offer in offers:
            pool = pool + offer.resources
            self._remove_offer(offer)
        return pool, problem, offers[0].agent_id if offers else ""

    def add_filter(
        self,
        framework: Framework,
        refused: Resources,
        filters: Any,
        only_if_given: bool = False,
        *,
        agent_id: str,
    ) -> None:
        """Refuse ``refused`` to the framework for ``filters.refuse_seconds``.

        ``only_if_given``: add no filter when the call had no ``filters`` (ACCEPT's
        leftovers; see the package docstring for why this departs from Mesos).
        """
        if only_if_given and not isinstance(filters, dict):
            return
        seconds = self._default_refuse_s
        if isinstance(filters, dict) and isinstance(filters.get("refuse_seconds"), int | float):
            seconds = float(filters["refuse_seconds"])
        if seconds > 0 and not refused.is_empty():
            framework.filters.append(OfferFilter(refused, time.time() + seconds, agent_id))

    # ----------------------------------------------------------------- offers
    def offers_of(self, framework_id: str) -> list[Offer]:
        """The framework's outstanding offers (for the state endpoint)."""
        return [o for o in self._offers.values() if o.framework_id == framework_id]

    def offered(self, agent_id: str | None = None) -> Resources:
        """Everything offered (on ``agent_id``, or anywhere) not yet accepted or declined."""
        total = Resources()
        for offer in self._offers.values():
            if agent_id is None or offer.agent_id == agent_id:
                total = total + offer.resources
        return total

    def remove_offers(self, framework: Framework) -> None:
        """Withdraw every outstanding offer of a framework (disconnect, failover, removal)."""
        for offer_id in list(framework.offers):
            offer = self._offers.get(offer_id)
            if offer is not None:
                self._remove_offer(offer)
        framework.offers.clear()

    def rescind_expired(self, now: float) -> bool:
        """Rescind every offer older than the offer timeout; True if any was.

        As Mesos' ``offerTimeout``: RESCIND to the framework, and the resources go back
        to the pool without a filter, so the next allocation may offer them again.
        """
        expired = [o for o in self._offers.values() if o.expires is not None and o.expires <= now]
        for offer in expired:
            self._rescind(offer)
        return bool(expired)

    def _rescind(self, offer: Offer) -> None:
        framework = self._frameworks.get(offer.framework_id)
        if framework is not None:
            framework.send(event("RESCIND", {"offer_id": {"value": offer.offer_id}}))
        self._remove_offer(offer)

    def _remove_offer(self, offer: Offer) -> None:
        self._offers.pop(offer.offer_id, None)
        framework = self._frameworks.get(offer.framework_id)
        if framework is not None:
            framework.offers.discard(offer.offer_id)

    def remove_agent_offers(self, agent_id: str) -> None:
        """Rescind every outstanding offer on an agent (removed or unreachable)."""
        for offer in [o for o in self._offers.values() if o.agent_id == agent_id]:
            self._rescind(offer)

    def allocate(self, agent: AgentRecord, now: float, shares: dict[str, float]) -> None:
        """Offer the agent's unallocated resources to the neediest eligible framework.

        ``shares``: the cpus each framework holds across the cluster.
        """
        available = agent.total - agent.used_resources() - self.offered(agent.agent_id)
        if available.scalar("cpus") < _MIN_CPUS and available.scalar("mem") < _MIN_MEM_MB:
            return
        # Mesos' --filter_gpu_resources (true by default): an agent with GPUs is offered
        # only to frameworks that declare GPU_RESOURCES, so the others cannot take the
        # CPUs that GPU jobs need.
        has_gpus = agent.total.scalar("gpus") > 0
        candidates: list[tuple[float, str, Framework]] = []
        for framework in self._frameworks.values():
            framework.filters = [f for f in framework.filters if f.expires > now]
            if framework.stream is None or framework.suppressed:
                continue
            if has_gpus and not framework.declares("GPU_RESOURCES"):
                continue
            if any(
                f.agent_id == agent.agent_id and f.resources.contains(available)
                for f in framework.filters
            ):
                continue
            share = shares.get(framework.framework_id, 0.0)
            candidates.append((share, framework.framework_id, framework))
        if not candidates:
            return
        # Dominant-resource fairness reduced to cpus: the least served framework first.
        framework = min(candidates, key=lambda c: (c[0], c[1]))[2]
        offer_id = f"{self._master_id}-O{self._next_offer}"
        self._next_offer += 1
        timeout = self._offer_timeout_s
        expires = now + timeout if timeout is not None else None
        self._offers[offer_id] = Offer(
            offer_id, framework.framework_id, available, expires, agent.agent_id
        )
        framework.offers.add(offer_id)
        offer_json = self._offer_json(agent, offer_id, framework.framework_id, available)
        framework.send(event("OFFERS", {"offers": [offer_json]}))

    def _offer_json(
        self, agent: AgentRecord, offer_id: str, framework_id: str, resources: Resources
    ) -> JSON:
        host, port = agent.hostname, agent.port
        return {
            "id": {"value": offer_id},
            "framework_id": {"value": framework_id},
            "agent_id": {"value": agent.agent_id},
            "hostname": host,
            "url": {
                "scheme": "http",
                "address": {"hostname": host, "ip": host, "port": port},
                "path": "/slave(1)",
            },
            "resources": resources.to_json(),
            "executor_ids": [{"value": e} for e in agent.executor_ids(framework_id)],
        }
