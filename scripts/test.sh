#!/usr/bin/env bash
# Install what the tests need, check lint, formatting and types, then run the whole test suite
# (unit + namespace integration tests + the shipped scenarios). Integration tests need root;
# run this as root (CI does). Extra arguments go to pytest; with test paths among them, only those run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
echo "test.sh: ruff check, ruff format --check, mypy --strict"
.venv/bin/ruff check --quiet .
.venv/bin/ruff format --check --quiet .
.venv/bin/mypy --strict testbed | tail -n 1
.venv/bin/testbed clean >/dev/null 2>&1 || true
for arg in "$@"; do
    # Paths or test ids given: run just those, as asked.
    [[ "$arg" != -* && -e "${arg%%::*}" ]] && exec .venv/bin/python -m pytest "$@"
done
# The whole suite in two parts: the unit tests on two workers (they wait on subprocesses and
# timeouts more than they compute), then the namespace tests and the scenarios one at a time
# (they check the host's namespaces, routes and firewall before and after, so they never overlap).
status=0
.venv/bin/python -m pytest -n 2 tests/unit "$@" || status=$?
.venv/bin/python -m pytest tests/integration scenarios "$@" || { s=$?; [[ $status -ne 0 ]] || status=$s; }
exit "$status"
