#!/usr/bin/env bash
# Set-up and the whole test suite, on a CPU: bash scripts/test.sh [extra pytest arguments]
# Two pytest-xdist workers by default (TEST_WORKERS=N for another number, 0 for none): most of a
# test's time is tracing and Python on one core, so a second worker uses the second core; each
# worker computes on one thread (tests/conftest.py). The tests of one file run in one worker, so a
# module's fixtures are built once (--dist=loadgroup would not do: with pytest 9.2 and
# pytest-xdist 3.8 it ignores the xdist_group marks).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh" test
cd "$repo"
echo "== running the test suite"
exec "$repo/.venv/bin/python" -m pytest -n "${TEST_WORKERS:-2}" --dist=loadfile "$@"
