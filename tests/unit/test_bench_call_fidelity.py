"""benchmarks/call_fidelity.py: the engine variants it writes load as the engine they name."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from testbed.errors import ScenarioError
from testbed.scenario.call_schema import CallEngine

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("call_fidelity", REPO / "benchmarks" / "call_fidelity.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("call_fidelity", module)
    spec.loader.exec_module(module)
    return module


cf = _bench()


@pytest.mark.parametrize("name", cf.SCENARIOS)
@pytest.mark.parametrize("engine", list(cf.Engine))
def test_every_variant_loads_with_the_engine_keys_where_the_loader_reads_them(
    name: str, engine: Any, tmp_path: Path
) -> None:
    path, _ = cf.write_variant(REPO / "scenarios" / f"{name}.yaml", engine, tmp_path)
    from testbed.scenario.loader import load_scenario

    loaded = load_scenario(path).scenario
    original = load_scenario(REPO / "scenarios" / f"{name}.yaml").scenario
    assert loaded.name == f"{original.name}-{engine.value}"
    # Only the engine's keys change: same calls, same censor rules, same expectations.
    assert [c.name for c in loaded.calls] == [c.name for c in original.calls]
    assert loaded.censor.rules == original.censor.rules
    assert loaded.expect == original.expect
    for call in loaded.calls:
        if engine is cf.Engine.CHROMIUM:
            assert (call.engine.caller, call.engine.callee) == (CallEngine.CHROMIUM, CallEngine.CHROMIUM)
            assert call.adapt is None and call.profile not in cf.APP_PROFILES
        else:
            assert (call.engine.caller, call.engine.callee) == (CallEngine.AIORTC, CallEngine.AIORTC)
            assert call.adapt is (engine is cf.Engine.AIORTC_ADAPTIVE)
        if engine is cf.Engine.AIORTC_FIXED:
            # aiortc's own default rate: no bitrate and no app profile's Opus.
            assert call.audio is None or call.audio.bitrate is None
            assert call.profile not in cf.APP_PROFILES


def test_adaptive_keeps_an_app_profile_and_a_given_bitrate_else_starts_at_32k(tmp_path: Path) -> None:
    path, notes = cf.write_variant(REPO / "scenarios" / "call-throttled-24k.yaml", cf.Engine.AIORTC_ADAPTIVE, tmp_path)
    from testbed.scenario.loader import load_scenario

    calls = {c.name: c for c in load_scenario(path).scenario.calls}
    assert calls["whatsapp"].profile == "whatsapp" and calls["whatsapp"].audio is None
    assert calls["webrtc-like"].audio is not None and calls["webrtc-like"].audio.bitrate == 32000
    assert notes == []
    plain = {"name": "s", "calls": [{"name": "a", "media": ["audio"]}, {"name": "d", "media": ["data"]}]}
    new, _ = cf.variant(plain, cf.Engine.AIORTC_ADAPTIVE)
    assert new["calls"][0] == {"name": "a", "media": ["audio"], "adapt": True, "audio": {"bitrate": "32kbit"}}
    assert "adapt" not in new["calls"][1]  # adapt needs audio: a data-only call is left alone
    assert plain["calls"][0] == {"name": "a", "media": ["audio"]}  # the input is not modified


def test_dropping_an_app_profile_keeps_its_relay_only_policy_and_says_so(tmp_path: Path) -> None:
    source = {
        "name": "s",
        "nodes": {"relay": {"services": [{"turn": {"port": 3478}}]}},
        "calls": [{"name": "wa", "profile": "whatsapp", "ice": {"turn": "relay"}, "adapt": True}],
    }
    new, notes = cf.variant(source, cf.Engine.CHROMIUM)
    assert new["calls"][0] == {"name": "wa", "ice": {"turn": "relay", "policy": "relay"}, "engine": "chromium"}
    assert notes and "whatsapp" in notes[0]


def test_a_variant_the_loader_refuses_raises_a_scenario_error(tmp_path: Path) -> None:
    source = tmp_path / "bad.yaml"
    source.write_text(yaml.safe_dump({"name": "bad", "calls": [{"name": "a", "media": ["video"], "video": "vp9"}]}))
    with pytest.raises(ScenarioError):
        cf.write_variant(source, cf.Engine.CHROMIUM, tmp_path)


def _result(calls: list[dict[str, Any]], checks: list[dict[str, Any]]) -> dict[str, Any]:
    rule = {"name": "police", "matched_flows": 1, "dropped": 355, "delayed": 0, "drops": {"policed": 355}}
    return {"scenarios": [{"error": None, "expectations": checks, "calls": calls, "censor": {"rules": [rule]}}]}


def test_rows_report_the_scenarios_failed_expectations_and_the_rule_counters_without_judging() -> None:
    call = {
        "name": "app",
        "connected": True,
        "outcome": "degraded",
        "setup_ms": 503.0,
        "mos": 2.17,
        "loss_pct": 20.2,
        "media_s": 10.0,
        "candidate_type": "host",
        "candidate_transport": "udp",
        "quality": {"caller": {"audio_gap_ms": 900.0, "freezes": None}, "callee": {"audio_gap_ms": 100.0}},
        "streams": [
            {"kind": "audio", "direction": "send", "bytes": 32500},
            {"kind": "audio", "direction": "recv", "bytes": 25000, "audio_gap_max_ms": 150.0},
            {"kind": "data", "direction": "recv", "bytes": 99999},
        ],
        "error": None,
    }
    checks = [{"what": "app: mos >= 3.6", "passed": False}, {"what": "app: connected", "passed": True}]
    (row,) = cf.rows_from_result(_result([call], checks), "call-throttled", cf.Engine.CHROMIUM, ["a note"])
    assert (row.outcome, row.expect, row.failed_expectations) == ("degraded", "1/2", ["app: mos >= 3.6"])
    assert row.sent_kbps == 26.0 and row.bitrate_kbps == 20.0  # audio payload only, over the media time
    assert row.censor == "police: 1 flow dropped 355 (policed 355)"
    assert row.gaps == "audio gaps 0.9 s (longest 0.15 s)" and row.path == "host/udp"
    text = cf.table([row])
    assert "| call-throttled | chromium | app | degraded | 503 ms | 2.17 | 20.2 % | 26 / 20 |" in text
    assert "expectation not met: app: mos >= 3.6" in text and "a note" in text


def test_a_call_that_never_connected_has_no_numbers_and_carries_its_error() -> None:
    call = {"name": "a", "connected": False, "outcome": "blocked", "error": "no answer\nmore", "streams": []}
    (row,) = cf.rows_from_result(_result([call], []), "s", cf.Engine.AIORTC_FIXED, [])
    assert row.outcome == "blocked" and row.mos is None and row.path == "" and row.notes == ["no answer"]
    assert "| s | aiortc-fixed | a | blocked | — | — | — | — / — |" in cf.table([row])
