"""Port guesses (``by-port``) satisfy a label rule only when it asks for them (issue 14, item 10).

The classifier guesses a protocol from a well-known port when inspection ends on a flow it did
not recognise. Seen by an ordinary label rule, that guess turned a flow it had accepted for its
first packets into a blocked one mid-flow: a static-key OpenVPN tunnel on UDP 1194 passed 14
pings, then died.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from test_policy_support import CALLEE, CALLER, engine, play, policy, spec, udp

from testbed.scenario.policy_schema import LabelsSpec

INSPECT = 12  # the test engine's classifier budget (payload packets)


def _not_openvpn_on_1194(n: int = 3 * INSPECT) -> list[tuple[float, bytes]]:
    # 0x55 is no OpenVPN opcode, no STUN/DTLS/RTP/QUIC first byte: nothing recognises it.
    return [(i * 0.01, udp(CALLER, 40000, CALLEE, 1194, b"\x55" * 120)) for i in range(n)]


def test_a_port_guess_does_not_satisfy_a_label_rule() -> None:
    e = engine(policy("rules:\n  - {name: vpn, match: {labels: [openvpn]}, action: drop}\n"), inspect_packets=INSPECT)
    verdicts = play(e, _not_openvpn_on_1194())
    flow = next(iter(e.classifier.table))
    assert {"openvpn", "by-port"} <= flow.labels  # the guess is made (and shows in flow records)
    assert [v.rule for v in verdicts] == [None] * len(verdicts)  # but the rule never acts on it


def test_a_rule_that_asks_for_guesses_gets_them_once_inspection_ends() -> None:
    text = "rules:\n  - {name: vpn, match: {labels: {any: [openvpn], guesses: true}}, action: drop}\n"
    e = engine(policy(text), inspect_packets=INSPECT)
    got = [v.rule for v in play(e, _not_openvpn_on_1194())]
    # The guess is made on the packet that ends inspection: from there on the rule matches.
    assert got == [None] * (INSPECT - 1) + ["vpn"] * (2 * INSPECT + 1)


def test_by_port_asks_for_guesses_explicitly() -> None:
    with pytest.raises(ValidationError, match="guesses: true"):
        spec("rules:\n  - {name: g, match: {labels: [by-port]}, action: drop}\n")
    text = "rules:\n  - {name: g, match: {labels: {any: [by-port], guesses: true}}, action: accept}\n"
    e = engine(policy(text), inspect_packets=INSPECT)
    assert [v.rule for v in play(e, _not_openvpn_on_1194())][-1] == "g"


def test_recognised_labels_still_match_on_a_guessable_port() -> None:
    # A real content label is unaffected: a STUN flow on 3478 is matched from its first packet.
    from _dpi_helpers import stun_message

    e = engine(policy("rules:\n  - {name: s, match: {labels: [stun]}, action: drop}\n"), inspect_packets=INSPECT)
    assert [v.rule for v in play(e, [(0, udp(CALLER, 1, CALLEE, 3478, stun_message(0x0001, [])))])] == ["s"]


def test_labels_shorthand_and_mapping_forms() -> None:
    assert LabelsSpec.model_validate("stun") == LabelsSpec.model_validate({"any": ["stun"]})
    assert LabelsSpec.model_validate(["stun", "dtls"]).any_ == ("stun", "dtls")
    got = LabelsSpec.model_validate({"any": "openvpn", "guesses": True})
    assert got.any_ == ("openvpn",) and got.guesses is True
    with pytest.raises(ValidationError, match="at least one label"):
        LabelsSpec.model_validate({"any": [], "guesses": True})
