"""The ``expect:`` and ``verdict:`` schemas."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from testbed.scenario.expect_schema import CandidateType, Expectation, Outcome, VerdictSettings


def test_old_expectations_still_load() -> None:
    exp = Expectation.model_validate({"call": "a", "connected": True})
    assert exp.connected is True and exp.outcome is None


def test_bare_numbers_bound_the_bad_direction() -> None:
    exp = Expectation.model_validate({"loss_pct": 5, "mos": 3.5, "setup": "2s", "bitrate_kbps": 20})
    assert exp.loss_pct is not None and exp.loss_pct.max == 5 and exp.loss_pct.min is None
    assert exp.mos is not None and exp.mos.min == 3.5
    assert exp.setup is not None and exp.setup.max == 2.0
    assert exp.bitrate_kbps is not None and exp.bitrate_kbps.min == 20


def test_shorthands() -> None:
    exp = Expectation.model_validate({"outcome": "blocked", "candidate": "relay/tls", "window": {"from": "10s"}})
    assert exp.outcome == (Outcome.BLOCKED,)
    assert exp.candidate is not None and exp.candidate.type is CandidateType.RELAY
    assert exp.candidate.transport is not None and exp.candidate.transport.value == "tls"
    assert exp.window is not None and exp.window.from_ == 10.0 and exp.window.until is None


@pytest.mark.parametrize(
    ("entry", "loc"),
    [
        ({"call": "a"}, ()),
        ({"mos": 5}, ("mos",)),
        ({"loss_pct": {"min": 5, "max": 1}}, ("loss_pct", "max")),
        ({"outcome": "fine"}, ("outcome", 0)),
        ({"connected": True, "window": {"from": 5, "until": 2}}, ("window", "until")),
        ({"candidate": "relay/quic"}, ("candidate", "transport")),
        ({"connected": True, "survive": "5s"}, ("survive",)),
    ],
)
def test_errors_point_at_the_key(entry: dict[str, object], loc: tuple[object, ...]) -> None:
    with pytest.raises(ValidationError) as info:
        Expectation.model_validate(entry)
    assert info.value.errors()[0]["loc"][: len(loc)] == loc


def test_verdict_defaults_and_units() -> None:
    v = VerdictSettings.model_validate({"max_setup": "2s", "dead_after": "1500ms"})
    assert v.max_setup == 2.0 and v.dead_after == 1.5 and v.min_mos == 3.6
    with pytest.raises(ValidationError):
        VerdictSettings.model_validate({"dead_after": 0})
