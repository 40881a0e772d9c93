#!/usr/bin/env bash
# `make chromium`: a headless Chromium on this machine, idempotent.
# `ancho report --pdf` prints its HTML report to PDF with it; tests/test_web.py drives it
# with Selenium through Debian's chromium-driver (/usr/bin/chromedriver, the same version).
# Installs Debian's chromium and chromium-driver (and a font, so printed text has glyphs)
# when no chromium, chromium-browser or google-chrome, or no chromedriver is on PATH, or
# no TrueType/OpenType font is installed;
# runs `apt-get update` only when the first install attempt fails (stale package lists).
set -euo pipefail
browser=""
for bin in chromium chromium-browser google-chrome; do
  if command -v "$bin" >/dev/null; then
    browser=$(command -v "$bin")
    break
  fi
done
font=$(find /usr/share/fonts /usr/local/share/fonts -name '*.[ot]tf' -print -quit 2>/dev/null || true)
driver=$(command -v chromedriver || true)
if [ -n "$browser" ] && [ -n "$font" ] && [ -n "$driver" ]; then
  echo "chromium: $browser and $driver present" >&2
  exit 0
fi
echo "chromium: installing Debian's chromium, chromium-driver and fonts-dejavu-core" >&2
export DEBIAN_FRONTEND=noninteractive
packages=(chromium chromium-driver fonts-dejavu-core)
if ! apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null; then
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${packages[@]}" >/dev/null
fi
echo "chromium: $(command -v chromium) and $(command -v chromedriver) installed" >&2
