#!/usr/bin/env bash
# Provision the one-node dev box (Debian bookworm). Idempotent.
#
# Apache Mesos was retired to the Attic in 2025 and is in no Debian release: pass a
# maintained Mesos 1.11 .deb with MESOS_DEB=/ancho/path/to/mesos.deb (vagrant up with
# that variable set). Without it the box still gets everything else, and Ancho runs on
# its embedded single-node cluster.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q openjdk-17-jdk-headless maven zookeeperd docker.io \
  python3 python3-venv python3-dev build-essential git
systemctl enable --now zookeeper docker

if [[ -n "${MESOS_DEB:-}" && -f "$MESOS_DEB" ]]; then
  apt-get install -y -q "$MESOS_DEB"
  echo "zk://127.0.0.1:2181/mesos" > /etc/mesos/zk
  echo "docker,mesos" > /etc/mesos-slave/containerizers
  echo "10mins" > /etc/mesos-slave/executor_registration_timeout
  systemctl enable --now mesos-master mesos-slave
  echo "Mesos master: http://localhost:5050 (zk://127.0.0.1:2181/mesos)"
else
  echo "MESOS_DEB not given: skipping Mesos; use 'ancho run' (embedded cluster)." >&2
fi

cd /ancho
sudo -u vagrant make install
make cassandra image          # Cassandra 5.0 (as in CI) and the executor image

# `ancho server` on port 8080 (forwarded to the host): the real master when Mesos is
# installed, else the embedded one; results in the development Cassandra.
MASTER=embedded
[[ -n "${MESOS_DEB:-}" && -f "$MESOS_DEB" ]] && MASTER="zk://127.0.0.1:2181/mesos"
cat > /etc/systemd/system/ancho-server.service <<UNIT
[Unit]
Description=Ancho server (scheduler and REST API)
After=network-online.target docker.service zookeeper.service

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
