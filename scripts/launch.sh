#!/usr/bin/env bash
# Set up (if needed) and serve the browser app on the bundled checkpoint: http://localhost:8501
# (`workbench app --help`: --port, --address, --headless; arguments are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
if [ -z "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ] && [ "$(uname)" != Darwin ]; then
  set -- --headless "$@"  # no screen to open a browser window on: just serve
fi
exec workbench app "$@"
