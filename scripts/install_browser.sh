#!/usr/bin/env bash
# Install Debian's chromium for the browser tests (tests/test_browser.py), if it is missing.
# Tolerant: when it cannot install (no root, no network, no apt), it says so and exits 0,
# and the browser tests skip. Never runs `playwright install`.
set -u
BROWSER=/usr/bin/chromium
if [ -x "$BROWSER" ]; then
  echo "install_browser: $BROWSER already installed"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install_browser: no apt-get here; browser tests will be skipped"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
  else
    echo "install_browser: not root and no passwordless sudo; browser tests will be skipped"
    exit 0
  fi
fi
export DEBIAN_FRONTEND=noninteractive
if $SUDO apt-get update -qq >/dev/null 2>&1 \
  && $SUDO apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
  && [ -x "$BROWSER" ]; then
  echo "install_browser: installed $("$BROWSER" --version 2>/dev/null || echo chromium)"
else
  echo "install_browser: could not install chromium; browser tests will be skipped"
fi
exit 0
