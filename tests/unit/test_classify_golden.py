"""Classification pinned on every shared capture (and shuffled mixes of their payloads).

data/classify_golden.json was recorded from main before core/classify.py became a package
(issue 11): labels, SNI, ALPN, fingerprints, inspection counters and the packets that changed
a flow's facts, for each capture under several classifier configurations. Any difference is a
behaviour change; if intended, regenerate with ``python tests/unit/_classify_golden.py`` and
review the diff (see that module).
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
from _classify_golden import GOLDEN, SHARED_PCAPS, captures, snapshot

pytestmark = pytest.mark.skipif(
    not SHARED_PCAPS.is_dir(),
    reason=f"real captures not found at {SHARED_PCAPS} (the shared folder beside the checkout)",
)


@cache
def current() -> dict[str, Any]:
    return snapshot()


@cache
def expected() -> dict[str, Any]:
    return json.loads(GOLDEN.read_text())  # type: ignore[no-any-return]


def test_golden_covers_every_shared_capture() -> None:
    assert sorted(expected()) == sorted([p.name for p in captures()] + ["shuffled"])


@pytest.mark.parametrize("capture", sorted(json.loads(GOLDEN.read_text())))
def test_classification_unchanged(capture: str) -> None:
    got, want = current()[capture], expected()[capture]
    assert sorted(got) == sorted(want)
    for run in want:
        assert got[run]["counters"] == want[run]["counters"], (capture, run)
        assert len(got[run]["flows"]) == len(want[run]["flows"]), (capture, run)
        for g, w in zip(got[run]["flows"], want[run]["flows"], strict=True):
            assert g == w, (capture, run)
