"""``ancho cluster start|status|kill|partition|stop``: the development cluster's commands.

The cluster's folder is ``ANCHO_CLUSTER_DIR`` (default ``.ancho/cluster``);
``ANCHO_CLUSTER_PORTS=ZK,MASTER,AGENT`` moves its ports off the defaults
(2181, 5050, 5051), e.g. for tests next to a running cluster.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import ClusterError
from .supervisor import Cluster, Layout


def _cluster() -> Cluster:
    folder = Path(os.environ.get("ANCHO_CLUSTER_DIR", ".ancho/cluster"))
    ports = os.environ.get("ANCHO_CLUSTER_PORTS")
    layout = Layout()
    if ports:
        try:
            zk, master, agent = (int(p) for p in ports.split(","))
        except ValueError:
            raise ClusterError(
                f"ANCHO_CLUSTER_PORTS={ports!r}: expected three ports ZK,MASTER,AGENT"
            ) from None
        layout = Layout(zk_port=zk, master_port=master, agent_port=agent)
    for name, attr in (("ANCHO_CLUSTER_AGENT_PING_TIMEOUT", "agent_ping_timeout_s"),):
        if os.environ.get(name):
            setattr(layout, attr, float(os.environ[name]))
    return Cluster(folder, layout)


@click.group()
def cluster() -> None:
    """A development cluster on loopback: ZooKeeper, Mesos masters and agents, and
    optionally a Cassandra ring and Spark."""


@cluster.command()
@click.option("--agents", type=click.IntRange(1, 200), default=3, show_default=True)
@click.option("--masters", type=click.IntRange(1, 9), default=1, show_default=True)
@click.option("--cpus", type=click.FloatRange(min=0.1), help="Cpus per agent.")
@click.option("--mem-mb", type=click.IntRange(min=64), help="Memory per agent (MB).")
@click.option("--spark-workers", type=click.IntRange(0, 20), default=0,
              help="A Spark standalone master and this many workers.")  # fmt: skip
@click.option("--cassandra", type=click.IntRange(0, 9), default=0,
              help="A Cassandra ring of this many nodes (127.0.0.21 and up).")  # fmt: skip
def start(
    agents: int,
    masters: int,
    cpus: float | None,
    mem_mb: int | None,
    spark_workers: int,
    cassandra: int,
) -> None:
    """Start the cluster in the background; print its status once every agent is
    registered."""
    status = _cluster().start(
        agents=agents,
        masters=masters,
        cpus=cpus,
        mem_mb=mem_mb,
        spark_workers=spark_workers,
        cassandra=cassandra,
    )
    click.echo(json.dumps(status, indent=1))


@cluster.command()
def status() -> None:
    """The cluster's processes, the leader and the registered agents, as JSON."""
    click.echo(json.dumps(_cluster().status(), indent=1))


@cluster.command()
@click.argument("kind", type=click.Choice(["agent", "leader", "master", "cassandra", "zookeeper"]))
@click.argument("target", required=False)
@click.option("--restart", is_flag=True, help="Start it again with its old identity.")
def kill(kind: str, target: str | None, restart: bool) -> None:
    """SIGKILL one process: agent ID, leader, master ADDRESS, cassandra ADDRESS or
    zookeeper."""
    if kind in ("agent", "master", "cassandra") and not target:
        raise click.UsageError(f"`ancho cluster kill {kind}` needs the {kind}'s id or address")
    member = _cluster().kill(kind, target, restart=restart)
    verb = "restarted" if restart else "killed"
    click.echo(json.dumps({"role": member.role, "address": member.address, verb: True}))


@cluster.command()
@click.argument("kind", type=click.Choice(["agent"]))
@click.argument("agent_id", metavar="ID")
@click.option("--seconds", type=click.FloatRange(min=0.1), help="Heal after this long.")
def partition(kind: str, agent_id: str, seconds: float | None) -> None:
    """Drop all traffic between an agent and the masters (until `stop`, or --seconds)."""
    _cluster().partition(agent_id, seconds)
    until = f"for {seconds:g} s" if seconds is not None else "until `ancho cluster stop`"
    click.echo(f"agent {agent_id} partitioned from the masters {until}")


@cluster.command()
def stop() -> None:
    """Stop everything the cluster started (idempotent)."""
    _cluster().stop()
    click.echo("cluster stopped")
