#!/usr/bin/env bash
# `make docker`: a running Docker engine on this machine, idempotent.
# Installs Debian's docker.io (and debootstrap, for the registry-free base image, and
# iptables, which Docker and `ancho cluster partition` use) when missing, and starts
# dockerd in the background when it is not answering.
set -euo pipefail
LOG_DIR=${ANCHO_DOCKER_LOG_DIR:-.cache/docker}
mkdir -p "$LOG_DIR"
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null \
    || ! command -v iptables >/dev/null; then
  echo "docker: installing docker.io, debootstrap and iptables from Debian" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q docker.io debootstrap iptables >/dev/null
fi
if docker info >/dev/null 2>&1; then
  echo "docker: engine running" >&2
  exit 0
fi
nohup dockerd >"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
for _ in $(seq 1 60); do
  if docker info >/dev/null 2>&1; then
    echo "docker: engine started" >&2
    exit 0
  fi
  sleep 1
done
echo "docker: dockerd did not answer within 60 s; see $LOG_DIR/dockerd.log" >&2
exit 1
