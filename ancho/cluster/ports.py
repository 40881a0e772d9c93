"""Free TCP ports: what tests and the fault world put their servers on.

Ports are drawn below Linux's ephemeral range (32768 and up by default): a port taken
from that range can be the local port of some outgoing connection a moment later, and
a server then fails to bind it ("Address already in use", seen in CI on an agent's
address). ``ancho cluster`` listens on one port over several loopback addresses
(masters on 127.0.0.1-9, agents from 127.0.0.11), so :func:`cluster_port` checks them all.
"""

from __future__ import annotations

import random
import socket

_LOW, _HIGH = 20000, 32000  # below the ephemeral range
#: The addresses an ``ancho cluster`` may listen on (masters, then agents).
CLUSTER_HOSTS = tuple(f"127.0.0.{i}" for i in (*range(1, 10), *range(11, 31)))


def _free_on(port: int, hosts: tuple[str, ...]) -> bool:
    for host in hosts:
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                return False
    return True


def free_port(host: str = "127.0.0.1", *, hosts: tuple[str, ...] = ()) -> int:
    """A TCP port free right now on ``host`` (and every one of ``hosts``), drawn below
    the ephemeral range."""
    wanted = (host, *hosts)
    for _ in range(1000):
        port = random.randrange(_LOW, _HIGH)
        if _free_on(port, wanted):
            return port
    raise OSError(f"no free port in {_LOW}-{_HIGH} on {', '.join(wanted)}")


def cluster_port() -> int:
    """A port free on every address ``ancho cluster`` may listen on."""
    return free_port(hosts=CLUSTER_HOSTS)
