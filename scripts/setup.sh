#!/usr/bin/env bash
# Create .venv (if missing) and install the workbench with its dev extras. Idempotent: a second run, with
# pyproject.toml unchanged, prints one line and does nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
stamp=.venv/.installed-$(sha1sum < pyproject.toml | cut -c1-12)
if [ -x .venv/bin/python ] && [ -f "$stamp" ]; then
  echo "setup: .venv is up to date with pyproject.toml"
  exit 0
fi
start=$SECONDS
if [ ! -x .venv/bin/python ]; then
  echo "setup: first run: creating .venv and installing dependencies (torch, streamlit, …): a few minutes"
  "$PY" -m venv .venv
else
  echo "setup: pyproject.toml changed: reinstalling dependencies into .venv (a few minutes)"
fi
. .venv/bin/activate
echo "setup: upgrading pip"
python -m pip install --quiet --upgrade pip
# torch first and pinned, so nothing pulls a CUDA build
echo "setup: installing torch 2.13.0 (CPU build)"
python -m pip install --quiet "torch==2.13.0"
echo "setup: installing the workbench and its dev extras (pip install -e '.[dev]')"
python -m pip install --quiet -e ".[dev]"
rm -f .venv/.installed-*
touch "$stamp"
echo "setup: done in $((SECONDS - start)) s: .venv is ready"
