"""The test tree itself: pytest imports test files by basename (no packages), so two files with
one name in tests/unit and tests/integration make the whole collection fail."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_test_file_basenames_are_unique() -> None:
    names = Counter(p.name for p in TESTS.rglob("*.py") if p.name != "conftest.py")
    clashes = sorted(n for n, c in names.items() if c > 1)
    assert not clashes, f"rename one of each (e.g. *_netns.py for the integration one): {clashes}"
