#!/usr/bin/env bash
# Creates (once) the project's virtual environment in .venv and installs semiseg_tf into it with the
# given extras. Sourced by demo.sh and test.sh; prints what it does.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
extras="${1:-}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3.12 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then python="$candidate"; break; fi
  done
fi
if [ ! -x "$repo/.venv/bin/python" ]; then
  echo "== creating $repo/.venv with $($python --version)"
  "$python" -m venv "$repo/.venv"
fi
echo "== installing semiseg_tf${extras:+[$extras]} and its pinned dependencies (first time: ~2 minutes)"
"$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$repo/.venv/bin/python" -m pip install --quiet --disable-pip-version-check -e "$repo${extras:+[$extras]}"
