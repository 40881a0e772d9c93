"""Unreserved agent resources: scalars (cpus, mem, disk, …) and ranges (ports).

Only what a single-node cluster offers is modelled: every resource has role ``*`` and
no reservation, disk source or shared flag. Scalars are kept to Mesos' fixed-point
precision (three decimals) so that repeated add/subtract cycles do not drift.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Range", "Resources", "parse_ranges"]

Range = tuple[int, int]  # inclusive, like Value.Range in mesos.proto
_EPSILON = 0.0005


def _round(value: float) -> float:
    return round(value, 3)


def _normalise(ranges: list[Range]) -> list[Range]:
    """Sort and merge overlapping or adjacent ranges."""
    merged: list[Range] = []
    for begin, end in sorted(ranges):
        if merged and begin <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((begin, end))
    return merged


def _subtract(ranges: list[Range], removed: list[Range]) -> list[Range]:
    result: list[Range] = []
    for begin, end in ranges:
        pieces = [(begin, end)]
        for r_begin, r_end in removed:
            next_pieces: list[Range] = []
            for p_begin, p_end in pieces:
                if r_end < p_begin or r_begin > p_end:
                    next_pieces.append((p_begin, p_end))
                    continue
                if p_begin < r_begin:
                    next_pieces.append((p_begin, r_begin - 1))
                if r_end < p_end:
                    next_pieces.append((r_end + 1, p_end))
            pieces = next_pieces
        result.extend(pieces)
    return _normalise(result)


def _covers(ranges: list[Range], wanted: list[Range]) -> bool:
    return all(any(b <= w_b and w_e <= e for b, e in ranges) for w_b, w_e in wanted)


def parse_ranges(text: str) -> list[Range]:
    """Parse ``"31000-32000,40000-40010"`` (the agent ``--resources`` style)."""
    ranges: list[Range] = []
    for part in text.replace("[", "").replace("]", "").split(","):
        part = part.strip()
        if not part:
            continue
        begin, _, end = part.partition("-")
        low, high = int(begin), int(end or begin)
        if low > high or low < 0:
            raise ValueError(f"invalid port range {part!r}")
        ranges.append((low, high))
    return _normalise(ranges)


@dataclass(slots=True)
class Resources:
    """A bag of unreserved resources."""

    scalars: dict[str, float] = field(default_factory=dict)
    ranges: dict[str, list[Range]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, items: Any) -> Resources:
        """Build from a JSON ``[Resource]`` list; raise ``ValueError`` on anything else."""
        if not isinstance(items, list):
            raise ValueError("resources must be a list")
        result = cls()
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                raise ValueError("each resource needs a name")
            name = item["name"]
            role = item.get("role", "*")
            if role != "*" or item.get("reservations") or item.get("reservation"):
                raise ValueError(f"resource {name}: only unreserved resources (role '*') exist")
            if item.get("disk") or item.get("shared") or item.get("provider_id"):
                raise ValueError(f"resource {name}: disk/shared/provider resources unsupported")
            kind = item.get("type")
            if kind == "SCALAR":
                value = item.get("scalar", {}).get("value")
                if not isinstance(value, int | float) or value < 0 or value != value:
                    raise ValueError(f"resource {name}: invalid scalar value")
                result.scalars[name] = _round(result.scalars.get(name, 0.0) + float(value))
            elif kind == "RANGES":
                raw = item.get("ranges", {}).get("range", [])
                try:
                    parsed = [(int(r["begin"]), int(r["end"])) for r in raw]
                except (KeyError, TypeError, ValueError) as exc:
                    raise ValueError(f"resource {name}: invalid ranges") from exc
                if any(b > e for b, e in parsed):
                    raise ValueError(f"resource {name}: range begin after end")
                result.ranges[name] = _normalise(result.ranges.get(name, []) + parsed)
            else:
                raise ValueError(f"resource {name}: unsupported type {kind!r}")
        return result

    def to_json(self) -> list[dict[str, Any]]:
        """Render as a JSON ``[Resource]`` list (zero scalars and empty ranges omitted)."""
        items: list[dict[str, Any]] = []
        for name in sorted(self.scalars):
            value = self.scalars[name]
            if value > _EPSILON:
                items.append(
                    {"name": name, "type": "SCALAR", "scalar": {"value": value}, "role": "*"}
                )
        for name in sorted(self.ranges):
            if self.ranges[name]:
                rng = [{"begin": b, "end": e} for b, e in self.ranges[name]]
                items.append(
                    {"name": name, "type": "RANGES", "ranges": {"range": rng}, "role": "*"}
                )
        return items

    def is_empty(self) -> bool:
        """True when nothing is left (all scalars zero and no ranges)."""
        return all(v <= _EPSILON for v in self.scalars.values()) and not any(self.ranges.values())

    def scalar(self, name: str) -> float:
        """The amount of scalar ``name`` (0 when absent)."""
        return self.scalars.get(name, 0.0)

    def contains(self, other: Resources) -> bool:
        """True when ``other`` fits entirely inside these resources."""
        for name, value in other.scalars.items():
            if value > self.scalar(name) + _EPSILON:
                return False
        return all(_covers(self.ranges.get(n, []), r) for n, r in other.ranges.items())

    def __add__(self, other: Resources) -> Resources:
        scalars = dict(self.scalars)
        for name, value in other.scalars.items():
            scalars[name] = _round(scalars.get(name, 0.0) + value)
        ranges = {n: list(r) for n, r in self.ranges.items()}
        for name, rng in other.ranges.items():
            ranges[name] = _normalise(ranges.get(name, []) + rng)
        return Resources(scalars, ranges)

    def __sub__(self, other: Resources) -> Resources:
        # Clamped at zero: accounting never lends out more than the agent has.
        scalars = dict(self.scalars)
        for name, value in other.scalars.items():
            scalars[name] = max(0.0, _round(scalars.get(name, 0.0) - value))
        ranges = {n: _subtract(r, other.ranges.get(n, [])) for n, r in self.ranges.items()}
        return Resources(scalars, ranges)
