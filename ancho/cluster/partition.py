"""Network partitions in the kernel: iptables rules dropping TCP between loopback endpoints.

``ancho cluster partition agent ID`` cuts an agent off from the masters as a switch
failure would: packets are dropped (not refused), so connections hang and time out as
they do on a real network, and established ones go silent. Each rule carries the
comment ``ancho-partition:<tag>`` so that healing removes exactly the rules it added,
even from another process (``ancho cluster stop`` heals every partition it made).
Needs root, as iptables does; loopback addresses only.
"""

from __future__ import annotations

import ipaddress
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from ..errors import ClusterError

_COMMENT = "ancho-partition:"


@dataclass(slots=True, frozen=True)
class Endpoint:
    """A listening TCP endpoint ``host:port`` on loopback."""

    host: str
    port: int

    @classmethod
    def parse(cls, address: str) -> Endpoint:
        host, _, port = address.rpartition(":")
        if not ipaddress.ip_address(host).is_loopback:
            raise ClusterError(f"{address}: partitions are made only between loopback addresses")
        return cls(host, int(port))


def _iptables(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("iptables")
    if binary is None:
        raise ClusterError("partitions need iptables (install Debian's iptables package)")
    return subprocess.run([binary, "-w", *args], capture_output=True, text=True)


def _rules(tag: str, a: str, b: Endpoint) -> list[list[str]]:
    """Drop both directions of every connection host ``a`` makes to, or takes from, ``b``."""
    mark = ["-m", "comment", "--comment", _COMMENT + tag, "-j", "DROP"]
    tcp = ["-p", "tcp"]
    return [
        ["-s", a, "-d", b.host, *tcp, "--dport", str(b.port), *mark],
        ["-s", b.host, "-d", a, *tcp, "--sport", str(b.port), *mark],
    ]


def partition(tag: str, side: list[Endpoint], other: list[Endpoint]) -> None:
    """Drop TCP between the endpoints of ``side`` and those of ``other``, both ways."""
    for x in side:
        for y in other:
            for rule in _rules(tag, x.host, y) + _rules(tag, y.host, x):
                result = _iptables("-I", "INPUT", *rule)
                if result.returncode != 0:
                    heal(tag)
                    raise ClusterError(
                        f"iptables refused a partition rule ({result.stderr.strip()}); "
                        "partitions need root"
                    )


def _tagged_rules() -> list[tuple[str, list[str]]]:
    """(tag, rule spec) of every Ancho partition rule in INPUT."""
    listed = _iptables("-S", "INPUT")
    if listed.returncode != 0:
        raise ClusterError(f"iptables cannot list rules: {listed.stderr.strip()}")
    found = []
    for line in listed.stdout.splitlines():
        words = shlex.split(line)  # iptables quotes the comment
        if words[:2] != ["-A", "INPUT"] or "--comment" not in words:
            continue
        comment = words[words.index("--comment") + 1]
        if comment.startswith(_COMMENT):
            found.append((comment.removeprefix(_COMMENT), words[2:]))
    return found


def heal(tag: str | None = None) -> int:
    """Remove the rules of partition ``tag`` (every Ancho partition if None); count them."""
    removed = 0
    for found, rule in _tagged_rules():
        if (tag is None or found == tag) and _iptables("-D", "INPUT", *rule).returncode == 0:
            removed += 1
    return removed


def partitioned(tag: str) -> bool:
    """Whether any rule of partition ``tag`` is in place."""
    return any(found == tag for found, _ in _tagged_rules())
