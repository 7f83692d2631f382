#!/usr/bin/env bash
# Set up (if needed) and open the workbench on the bundled default checkpoint.
# Until the browser app lands this is the terminal tour: `workbench demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
workbench demo "$@"
