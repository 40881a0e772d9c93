#!/usr/bin/env bash
# Provision the one-node dev box (Debian bookworm). Idempotent.
#
# Apache Mesos was retired to the Attic in 2025 and is in no Debian release: pass a
# maintained Mesos 1.11 .deb with MESOS_DEB=/ancho/path/to/mesos.deb (vagrant up with
# that variable set). Without it the box runs `ancho cluster` instead (its own
# ZooKeeper, embedded masters and agents on loopback), as on a developer's machine; the
# master URL is zk://127.0.0.1:2181/mesos either way.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q openjdk-17-jdk-headless maven docker.io iptables \
  python3 python3-venv python3-dev build-essential git
systemctl enable --now docker

if [[ -n "${MESOS_DEB:-}" && -f "$MESOS_DEB" ]]; then
  apt-get install -y -q zookeeperd "$MESOS_DEB"
  systemctl enable --now zookeeper
  echo "zk://127.0.0.1:2181/mesos" > /etc/mesos/zk
  echo "docker,mesos" > /etc/mesos-slave/containerizers
  echo "10mins" > /etc/mesos-slave/executor_registration_timeout
  systemctl enable --now mesos-master mesos-slave
  echo "Mesos master: http://localhost:5050 (zk://127.0.0.1:2181/mesos)"
else
  echo "MESOS_DEB not given: the box runs 'ancho cluster' (embedded Mesos) instead." >&2
fi

cd /ancho
sudo -u vagrant make install
make cassandra image          # Cassandra 5.0 (as in CI) and the executor image

# Without Mesos: `ancho cluster` (ZooKeeper on 2181, masters on 5050, three agents) as
# a unit, so the box and a developer's machine agree.
AFTER=zookeeper.service
if [[ -z "${MESOS_DEB:-}" || ! -f "$MESOS_DEB" ]]; then
  AFTER=ancho-cluster.service
  cat > /etc/systemd/system/ancho-cluster.service <<UNIT
[Unit]
Description=Ancho development cluster (ZooKeeper, embedded Mesos masters and agents)
After=network-online.target docker.service

[Service]
Type=oneshot
RemainAfterExit=yes
WorkingDirectory=/ancho
ExecStart=/ancho/.venv/bin/ancho cluster start --agents 3
ExecStop=/ancho/.venv/bin/ancho cluster stop

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now ancho-cluster
fi

# `ancho server` on port 8080 (forwarded to the host), on the master in ZooKeeper
# (Mesos' or ancho cluster's); results in the development Cassandra.
MASTER="zk://127.0.0.1:2181/mesos"
cat > /etc/systemd/system/ancho-server.service <<UNIT
[Unit]
Description=Ancho server (scheduler and REST API)
After=network-online.target docker.service $AFTER
Requires=$AFTER

[Service]
WorkingDirectory=/ancho
ExecStartPre=/usr/bin/make cassandra
ExecStart=/bin/sh -c 'exec /ancho/.venv/bin/ancho server --master $MASTER --store "\$(cat /ancho/.ancho/cassandra.url)" --bind 0.0.0.0:8080'
KillSignal=SIGTERM
TimeoutStopSec=60
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable --now ancho-server
echo "Ancho server: http://localhost:8080 (create a user: ancho user add NAME --store \"\$(cat /ancho/.ancho/cassandra.url)\")"
