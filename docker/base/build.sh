#!/usr/bin/env bash
# Build ancho/base:bookworm with no image registry: debootstrap a minimal Debian
# bookworm (from Debian's own package mirror) with Python 3.11 and a Java 17 runtime,
# then `docker import` it. The root filesystem tarball is cached, so a rebuild only
# re-imports. Usage: docker/base/build.sh [TAG]
set -euo pipefail
TAG=${1:-ancho/base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${ANCHO_DOCKER_CACHE:-.cache/docker}
TARBALL="$CACHE/bookworm-rootfs.tar"
PACKAGES=python3,python3-venv,ca-certificates,openjdk-17-jre-headless,procps,git
mkdir -p "$CACHE"
if docker image inspect "$TAG" >/dev/null 2>&1; then
  echo "base: $TAG exists" >&2
  exit 0
fi
if [[ ! -f "$TARBALL" ]]; then
  ROOT=$(mktemp -d)
  trap 'rm -rf "$ROOT"' EXIT
  echo "base: debootstrap bookworm (minbase + $PACKAGES)" >&2
  debootstrap --variant=minbase --include="$PACKAGES" bookworm "$ROOT" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1
  # Smaller image: no apt lists, caches or docs.
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/*
  tar -C "$ROOT" -c . >"$TARBALL.partial"
  mv "$TARBALL.partial" "$TARBALL"
fi
docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  "$TARBALL" "$TAG" >/dev/null
echo "base: imported $TAG" >&2
