#!/usr/bin/env bash
# Set-up and the whole test suite, on a CPU: bash scripts/test.sh [extra pytest arguments]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh" test
cd "$repo"
echo "== running the test suite"
exec "$repo/.venv/bin/python" -m pytest "$@"
