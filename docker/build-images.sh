#!/usr/bin/env bash
# `make image`: ancho/base (registry-free) and ancho/executor:<version> + :latest.
# Rebuilds reuse layers (the dependency layer changes only with setup.cfg).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = //p' setup.cfg)
BASE=${BASE_IMAGE:-ancho/base:bookworm}
if [[ "$BASE" == ancho/base:* ]]; then
  bash docker/base/build.sh "$BASE"
fi
# The build's pip reaches PyPI the way this machine does: its network, its CA bundle.
mkdir -p .cache/docker
cp "${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}" .cache/docker/build-ca.crt
docker build --network host --build-arg BASE_IMAGE="$BASE" \
  -f docker/executor/Dockerfile -t "ancho/executor:$VERSION" -t ancho/executor:latest .
