#!/usr/bin/env bash
# Set up (if needed) and run the default test suite: the one CI runs (.ci/run calls this script). Extra
# arguments go to pytest. The browser test (tests/test_app_browser.py) drives Debian's Chromium at
# /usr/bin/chromium: this script installs it when it can (root or sudo, apt-get) and says loudly when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
CHROMIUM=/usr/bin/chromium
if [ ! -x "$CHROMIUM" ]; then
  SUDO=""
  if [ "$(id -u)" -ne 0 ] && command -v sudo > /dev/null && sudo -n true 2> /dev/null; then SUDO=sudo; fi
  if command -v apt-get > /dev/null && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
    echo "test: $CHROMIUM is missing: installing Debian's chromium (apt-get install chromium) for the browser test"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
  fi
fi
if [ ! -x "$CHROMIUM" ]; then
  echo "############################################################################################"
  echo "test: WARNING: $CHROMIUM is missing and could not be installed here (needs apt-get and root"
  echo "test: or passwordless sudo): tests/test_app_browser.py will be SKIPPED. Install it with"
  echo "test:     sudo apt-get install chromium"
  echo "test: and run this script again to run the whole suite CI runs."
  echo "############################################################################################"
fi
echo "test: python -m pytest -q -rs $*"
python -m pytest -q -rs "$@"
