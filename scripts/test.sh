#!/usr/bin/env bash
# Install what the tests need, then run the whole test suite (unit + namespace integration tests).
# Integration tests need root; run this as root (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --test
.venv/bin/testbed clean >/dev/null 2>&1 || true
exec .venv/bin/python -m pytest "$@"
