#!/usr/bin/env bash
# Installs Debian's chromium for the browser test (tests/dashboards/test_browser.py), which
# drives it through Playwright's Python package (pip, dev extra) with executable_path.
# Never `playwright install`: its browser download needs the network and a different build.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "chromium present: $(/usr/bin/chromium --version 2>/dev/null || echo unknown version)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
  SUDO="sudo"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium
/usr/bin/chromium --version
