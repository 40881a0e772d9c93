#!/usr/bin/env bash
# Build ancho/base:bookworm with no image registry: debootstrap a minimal Debian
# bookworm (from Debian's own package mirror) with Python 3.11 and git (git+https model
# sources), then `docker import` it. No Java: executors never run a JVM (Spark runs on
# the scheduler's side). The root filesystem tarball is cached, so a rebuild only
# re-imports. Usage: docker/base/build.sh [TAG]
set -euo pipefail
TAG=${1:-ancho/base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${ANCHO_DOCKER_CACHE:-.cache/docker}
PACKAGES=python3,python3-venv,ca-certificates,procps,git
# The package list names the cached tarball and labels the image: changing the list
# rebuilds both, and an image or tarball made from another list is not reused.
KEY=$(printf '%s' "$PACKAGES" | sha256sum | cut -c1-12)
TARBALL="$CACHE/bookworm-rootfs-$KEY.tar"
mkdir -p "$CACHE"
built=$(docker image inspect -f '{{ index .Config.Labels "ancho.base.packages" }}' "$TAG" 2>/dev/null || true)
if [[ "$built" == "$PACKAGES" ]]; then
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
  # Root filesystems of other package lists are not used again.
  find "$CACHE" -maxdepth 1 -name 'bookworm-rootfs*.tar' ! -name "$(basename "$TARBALL")" -delete
fi
docker import \
  --change "LABEL ancho.base.packages=$PACKAGES" \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' \
  "$TARBALL" "$TAG" >/dev/null
echo "base: imported $TAG" >&2
