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
# The whole suite in two parts, each on two workers (the tests wait on subprocesses, networks
# and timeouts more than they compute): the unit tests, then the namespace tests and the
# scenarios, a file per worker at a time (run ids and namespaces never collide, and the host-state
# checks leave out the namespaces of runs that are alive: another worker's). The slowest are listed.
status=0
.venv/bin/python -m pytest -n 2 tests/unit "$@" || status=$?
.venv/bin/python -m pytest -n 2 --dist loadfile --durations=15 tests/integration scenarios "$@" \
    || { s=$?; [[ $status -ne 0 ]] || status=$s; }
exit "$status"
