"""An adaptive aiortc call under a policer lowers its bitrate; a fixed one loses its packets
(root; ``-m netns``).  Counters only: the censor's policed drops against the packets sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from _calls_fixtures import require_root

from testbed.scenario.loader import LoadedScenario, parse_scenario

pytestmark = pytest.mark.netns

SCENARIO = """
name: adapt-under-a-policer
nodes:
  phone: {side: inside}
  fixedphone: {side: inside}
  callee: {side: outside}
censor:
  rules:
    - name: police-adaptive
      match: {transport: udp, addr: phone}
      action: {throttle: {rate: 48kbit, burst: 4KB, mode: police, per: direction}, direction: both}
    - name: police-fixed
      match: {transport: udp, addr: fixedphone}
      action: {throttle: {rate: 48kbit, burst: 4KB, mode: police, per: direction}, direction: both}
calls:
  - {name: adaptive, from: phone, duration: 10s, media: [audio], adapt: true, audio: {bitrate: 32kbit}}
  - {name: fixed, from: fixedphone, duration: 10s, media: [audio]}
"""


def test_adaptive_call_keeps_its_packets_under_a_policer_and_the_fixed_one_does_not(tmp_path: Path) -> None:
    require_root()
    from testbed.runner import run_scenario

    path = tmp_path / "adapt.yaml"
    path.write_text(SCENARIO)
    result = asyncio.run(run_scenario(LoadedScenario(path, parse_scenario(SCENARIO, str(path)))))
    assert result.error is None, result.error
    doc = result.to_json()
    policed = {r["name"]: r["drops"].get("policed", 0) for r in doc["censor"]["rules"]}
    sent = {c["name"]: sum(s["packets_sent"] for s in c["streams"] if s["direction"] == "send") for c in doc["calls"]}
    assert all(c["connected"] for c in doc["calls"]), [c["outcome_reasons"] for c in doc["calls"]]
    # aiortc's fixed encoder sends ~120 kbit/s into a 48 kbit/s policer: measured ~2/3 dropped.
    assert policed["police-fixed"] > 0.4 * sent["fixed"], (policed, sent)
    # The adaptive call settles under the policer: measured ~4 % dropped; generous bound.
    assert policed["police-adaptive"] < 0.15 * sent["adaptive"], (policed, sent)
    adaptive = next(c for c in doc["calls"] if c["name"] == "adaptive")
    cuts = [state for _t, state in adaptive["state_timeline"] if ":media:audio-bitrate-" in state]
    assert cuts, "the adaptive call never changed its bitrate"
