"""Calls through the real censor with relays, NAT, app profiles and many at once (root; ``-m netns``).

Each test builds the runner's network (namespaces, the NFQUEUE censor, coturn) with
``censored_network`` and places its calls with ``run_calls``, so each costs one network set-up
(~2 s) plus its calls.  Only 198.18.0.0/15 is used; ICE servers are always explicit.
"""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

import pytest
from _calls_fixtures import call_specs, censored_network, require_root

from testbed.calls import CallResult, evaluate, run_calls
from testbed.scenario.expect_schema import Expectation

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(shutil.which("turnserver") is None, reason="coturn is not installed"),
]

NETWORK = """
name: relays
nodes:
  caller: {side: inside}
  callee: {side: outside}
  relay: {side: outside, services: [{turn: {port: 3478, tls_port: 443}}]}
  tgrelay: {side: outside, services: [{turn: {port: 1400, tls_port: null, realm: telegram.org}}]}
  phone: {side: inside, nat: symmetric}
  laptop: {side: outside, nat: symmetric}
  home: {side: inside, nat: port-restricted}
  office: {side: outside, nat: endpoint-independent}
censor:
  lists:
    telegram: [tgrelay]
calls: [{name: unused}]
"""


@pytest.fixture(autouse=True)
def root() -> None:
    require_root()


def _run(entries: list[dict[str, Any]], network: str = NETWORK) -> tuple[list[CallResult], dict[str, Any]]:
    async def go() -> tuple[list[CallResult], dict[str, Any]]:
        async with censored_network(network) as net:
            results = await run_calls(call_specs(*entries), nodes=net.nodes, services=net.services, workdir=net.workdir)
            return results, await net.censor.stop()

    return asyncio.run(go())


def _expect(results: list[CallResult], **checks: Any) -> None:
    outcome = evaluate([Expectation.model_validate(checks)], results)
    failed = [f"{e.what}: {e.detail}" for e in outcome if not e.passed]
    assert not failed, failed


def test_direct_turn_tls_443_stun_through_nat_and_symmetric_nat() -> None:
    results, censor = _run(
        [
            {"name": "direct", "duration": 2},
            {"name": "tls443", "duration": 2, "ice": {"turn": "relay", "transport": "tls", "policy": "relay"}},
            {
                "name": "natted",
                "from": "phone",
                "to": "laptop",
                "duration": 2,
                "ice": {"stun": "relay", "turn": "relay"},
            },
            {"name": "srflx", "from": "home", "to": "office", "duration": 2, "ice": {"stun": "relay"}},
            {"name": "tcp", "duration": 2, "ice": {"turn": "relay", "transport": "tcp", "policy": "relay"}},
        ]  # fmt: skip
    )
    by_name = {r.name: r for r in results}
    assert [r.name for r in results] == ["direct", "tls443", "natted", "srflx", "tcp"]
    _expect(results, outcome="ok", mos=4.0, loss_pct=1, setup="5s")
    _expect([by_name["direct"]], candidate="host/udp")
    _expect([by_name["tls443"]], candidate="relay/tls")
    # Two symmetric NATs: no direct path, so the relay it is.
    _expect([by_name["natted"]], candidate="relay/udp")
    # Cone NATs: STUN's server-reflexive candidates make a direct path, no relay needed.
    _expect([by_name["srflx"]], candidate="srflx/udp")
    _expect([by_name["tcp"]], candidate="relay/tcp")
    tls = [f for f in censor["flows"] if f["transport"] == "tcp" and any(e.endswith(":443") for e in f["endpoints"])]
    assert tls and all("tls" in f["labels"] for f in tls)
    direct = by_name["direct"]
    assert direct.setup_ice_ms is not None and direct.setup_dtls_ms is not None
    # The per-second timeline the HTML report plots.
    keys = {"t_s", "endpoint", "kind", "direction", "packets", "bytes", "bitrate_kbps", "lost", "loss_pct",
            "jitter_ms", "rtt_ms"}  # fmt: skip
    assert direct.samples and all(keys <= set(s) for s in direct.samples)
    audio_in = [s for s in direct.samples if s["kind"] == "audio" and s["direction"] == "recv"]
    assert sum(s["packets"] for s in audio_in) >= 0.8 * 50 * 2


def test_whatsapp_and_telegram_profiles_are_labelled_by_the_censor() -> None:
    results, censor = _run(
        [
            {"name": "wa", "duration": 2, "profile": "whatsapp", "ice": {"turn": "relay"}},
            {"name": "tg", "duration": 2, "profile": "telegram", "ice": {"turn": "tgrelay"}},
        ]
    )
    _expect(results, outcome="ok", candidate="relay/udp")
    flows = censor["flows"]

    def media_flows(port: str) -> list[dict[str, Any]]:
        # The call's media: DTLS on a flow to the relay's service port.
        return [f for f in flows if any(e.endswith(port) for e in f["endpoints"]) and "dtls" in f["labels"]]

    wa, tg = media_flows(":3478"), media_flows(":1400")
    assert len(wa) == 2 and len(tg) == 2, flows  # caller and callee, each to its relay
    assert all("whatsapp-call" in f["labels"] for f in wa), wa
    assert all("telegram-call" in f["labels"] for f in tg), tg
    assert not any("telegram-call" in f["labels"] for f in wa)
    assert not any("whatsapp-call" in f["labels"] for f in tg)


def test_ten_concurrent_calls() -> None:
    results, censor = _run(
        [{"name": "load", "count": 10, "duration": 2, "media": ["audio"]}], "name: t\ncalls: [{name: x}]\n"
    )
    assert [r.name for r in results] == [f"load#{i}" for i in range(1, 11)]
    _expect(results, call="load", connected=True, outcome=["ok", "degraded"])
    starts = [r.start_s for r in results]
    assert all(s is not None and s < 5.0 for s in starts)  # all at once, not staggered (generous: a loaded machine)
    assert len([f for f in censor["flows"] if f["transport"] == "udp"]) >= 10


def test_media_cut_and_restored_is_a_measured_failure_and_recovery() -> None:
    # The censor drops the call's UDP from 2.5 s to 6.5 s of each flow's life (the flow's own
    # age, so a slow start on a loaded machine moves the outage with the call): the call is
    # connected within a moment of its first packet, dies, and comes back.
    network = """
name: cut
censor:
  rules:
    - name: outage
      match: {transport: udp, age: {min: 2.5s, max: 6.5s}}
      action: drop
calls: [{name: unused}]
"""
    results, _censor = _run([{"name": "cut", "duration": 9, "media": ["audio"]}], network)
    (call,) = results
    assert call.connected, call.error
    assert call.time_to_failure_s is not None and 0.5 <= call.time_to_failure_s <= 5.0, call.time_to_failure_s
    assert call.recovered is True
    assert call.outcome == "degraded", call.outcome_reasons
    # Before the outage the audio was clean; across it, it was not.
    _expect(results, window={"until": "2.5s"}, loss_pct=1, mos=4.0)
    failed = evaluate([Expectation.model_validate({"survives": "8s"})], results)
    assert not failed[0].passed and "media stopped after" in failed[0].detail
    gaps = [s for s in call.samples if s["kind"] == "audio" and s["direction"] == "recv" and s["audio_gap_ms"]]
    assert sum(s["audio_gap_ms"] for s in gaps) >= 2500  # ~4 s without audio, seen by both ends


def test_ice_restart_gets_past_a_censor_that_cuts_each_flow() -> None:
    # A censor that lets each UDP flow carry 400 packets (~4 s of a two-way audio call) and
    # then drops it: a call that restarts ICE gets new ports, a new flow, and its media back.
    network = """
name: cut-each-flow
censor:
  rules:
    - name: cut-calls
      match: {transport: udp}
      action: {cut: {after_packets: 400}}
calls: [{name: unused}]
"""
    results, _censor = _run(
        [
            {"name": "plain", "duration": 8, "media": ["audio"]},
            {"name": "redial", "duration": 8, "media": ["audio"], "ice": {"restart": True}},
        ],
        network,
    )
    plain, redial = results
    assert plain.outcome == "blocked" and plain.recovered is False and plain.restarts == 0
    assert redial.restarts == 1 and redial.recovered is True, redial.outcome_reasons
    assert redial.outcome == "degraded"
    assert plain.time_to_failure_s is not None and redial.time_to_failure_s is not None
    assert abs(plain.time_to_failure_s - redial.time_to_failure_s) < 3.0
    labels = [e.label for e in redial.state_timeline]
    assert labels.index("relay:call:restart") < labels.index("relay:call:reconnected")
    # Counters run on across the restart: the callee heard both sessions' audio.
    heard = redial.stream("callee", "audio", "recv").packets_received or 0
    first_session = plain.stream("callee", "audio", "recv").packets_received or 0
    assert heard > first_session + 10, (heard, first_session, redial.silences)
