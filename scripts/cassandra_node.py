"""Run a real single-node Cassandra 5.0 for development and tests: ``make cassandra``.

``python scripts/cassandra_node.py start|stop|status``. ``start`` fetches Cassandra's
jars (and the Spark connector's) from Maven Central into ``.cache/``, then starts one
:class:`ancho.cluster.cassandra.CassandraNode` on 127.0.0.1 with its data under
``.cache/cassandra/node``, waits until CQL answers, replaces the default ``cassandra``
superuser with an Ancho admin role, and writes the admin store URL to
``.ancho/cassandra.url``. A second ``start`` finds it running and only checks it.
(``ancho cluster start --cassandra K`` runs a ring of the same nodes.)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ancho.cluster.cassandra import CassandraNode, cassandra_jars, cql_open, setup_admin  # noqa: E402
from ancho.errors import ClusterError  # noqa: E402

HOME = ROOT / ".cache" / "cassandra" / "node"
URL_FILE = ROOT / ".ancho" / "cassandra.url"
SPARK_JARS = ROOT / ".cache" / "spark-jars"
NODE = CassandraNode(HOME, heap=os.environ.get("ANCHO_CASSANDRA_HEAP", "1G"))


def log(message: str) -> None:
    """Progress on stderr."""
    sys.stderr.write(f"cassandra: {message}\n")


def fetch() -> None:
    """Cassandra's jars, and the Spark connector's, from Maven Central (once, cached)."""
    cassandra_jars()
    if not (SPARK_JARS.is_dir() and any(SPARK_JARS.glob("spark-cassandra-connector_*.jar"))):
        log("fetching the Spark Cassandra connector from Maven Central")
        subprocess.run(
            ["mvn", "-q", "-B", "-f", str(ROOT / "cassandra" / "spark-connector-pom.xml"),
             f"-Dmaven.repo.local={ROOT / '.cache' / 'm2'}", "dependency:copy-dependencies",
             f"-DoutputDirectory={SPARK_JARS}", "-DincludeScope=runtime"],
            check=True,
        )  # fmt: skip


def publish(url: str) -> None:
    """Write the admin URL where the tests and ``make run`` read it."""
    URL_FILE.parent.mkdir(parents=True, exist_ok=True)
    URL_FILE.write_text(url + "\n")
    URL_FILE.chmod(0o600)


def start(timeout: float) -> None:
    """Start (or find running) Cassandra and make sure the admin URL works."""
    pid = NODE.running_pid()
    fetch()
    if pid is not None and cql_open(NODE.host):
        log(f"running (pid {pid}); admin URL in {URL_FILE}")
        publish(setup_admin(NODE))
        return
    if pid is None and cql_open(NODE.host):
        raise SystemExit(f"cassandra: {NODE.address} is taken by another process")
    started = time.monotonic()
    if pid is None:
        pid = NODE.launch()
    NODE.wait_for_cql(pid, timeout)
    publish(setup_admin(NODE))
    log(f"started in {time.monotonic() - started:.1f} s (pid {pid}); admin URL in {URL_FILE}")


def main() -> None:
    """CLI: start | stop | status."""
    parser = argparse.ArgumentParser(prog="cassandra_node.py")
    parser.add_argument("command", choices=["start", "stop", "status"])
    parser.add_argument("--timeout", type=float, default=240.0)
    args = parser.parse_args()
    try:
        if args.command == "start":
            start(args.timeout)
        elif args.command == "stop":
            was = NODE.running_pid()
            NODE.stop()
            log("stopped" if was else "not running")
        else:
            pid = NODE.running_pid()
            print(f"running (pid {pid})" if pid and cql_open(NODE.host) else "not running")
            raise SystemExit(0 if pid else 1)
    except ClusterError as exc:
        raise SystemExit(f"cassandra: {exc}") from None


if __name__ == "__main__":
    main()
