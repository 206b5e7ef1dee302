#!/usr/bin/env bash
# The server's browser tests drive Debian's chromium through Playwright (no browser download).
set -euo pipefail
if command -v chromium >/dev/null; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "chromium is missing; install it with: apt-get install -y chromium" >&2
  exit 1
fi
echo "installing Debian's chromium for the browser tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
