#!/usr/bin/env bash
# Install what the tests need, check lint, formatting and types, then run the whole test suite
# (unit + namespace integration tests + the shipped scenarios). Integration tests need root;
# run this as root (CI does). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "test.sh: ruff check, ruff format --check, mypy --strict"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy --strict testbed | tail -n 1
.venv/bin/testbed clean >/dev/null 2>&1 || true
exec .venv/bin/python -m pytest "$@"
