"""Scenario files with the call options, end to end through ``testbed.runner`` (root; ``-m netns``).

Skipped until the scenario model uses ``call_schema.CallSpec`` (the runner wiring): until then
``test_calls_relays.py`` covers the same ground through ``run_calls`` directly.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from _calls_fixtures import require_root

from testbed.scenario import call_schema, model
from testbed.scenario.loader import LoadedScenario, parse_scenario

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(model.CallSpec is not call_schema.CallSpec, reason="runner not wired to call_schema yet"),
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed"),
]

SCENARIO = """
name: calls-through-relays
nodes:
  caller: {side: inside}
  callee: {side: outside}
  relay: {side: outside, services: [{turn: {port: 3478, tls_port: 443}}]}
  tgrelay: {side: outside, services: [{turn: {port: 1400, tls_port: null, realm: telegram.org}}]}
censor:
  lists: {telegram: [tgrelay]}
  rules:
    - name: no-direct-udp            # only relayed traffic gets through
      match: {transport: udp, not: {addr: [relay, tgrelay]}}
      action: drop
calls:
  - name: tls443
    duration: 2s
    ice: {turn: relay, transport: tls}
  - name: wa
    duration: 2s
    profile: whatsapp
    ice: {turn: relay}
  - name: tg
    duration: 2s
    profile: telegram
    ice: {turn: tgrelay}
  - name: direct
    duration: 2s
    connect_timeout: 4s
expect:
  - {call: tls443, outcome: ok, candidate: relay/tls, mos: 4}
  - {call: wa, outcome: ok, candidate: relay/udp}
  - {call: tg, outcome: ok}
  - {call: direct, outcome: blocked}
verdict: {max_setup: 5s}
"""


def test_scenario_with_relays_profiles_and_a_blocked_direct_call(tmp_path: Path) -> None:
    require_root()
    from testbed.runner import run_scenario

    path = tmp_path / "calls.yaml"
    path.write_text(SCENARIO)
    result = asyncio.run(run_scenario(LoadedScenario(path, parse_scenario(SCENARIO, str(path)))))
    assert result.error is None, result.error
    failed = [f"{e.what}: {e.detail}" for e in result.expectations if not e.passed]
    assert not failed, failed
    labels = {label for flow in result.censor["flows"] for label in flow["labels"]}
    assert {"whatsapp-call", "telegram-call"} <= labels
    as_json = result.to_json()
    assert all("samples" in c and "outcome" in c for c in as_json["calls"])
