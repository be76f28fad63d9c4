"""The GFW's QUIC SNI filter's limits as ``quic:`` options (censor-behaviors.md I.27; Zohaib et
al., USENIX Security 2025): only datagrams whose source port is above their destination port, and
no reassembly of a ClientHello split across several Initial packets."""

from __future__ import annotations

import pytest
from _dpi_helpers import build_client_hello
from test_dissect_quic import DCID, build_initial
from test_policy_iran import actions, rules_of
from test_policy_support import CALLEE, CALLER, engine, play, policy, udp

from testbed.core.dissect.quic import QUIC_V1
from testbed.core.policy.matchers.quic import whole_hello_in_first_initial

RULE = ("{name: gfw-quic, match: {transport: udp, sni: blocked.example, "
        "quic: {src_port_above_dst: true, first_initial_only: true}}, "
        "action: {drop: true, block_after: {for: 180s, key: client-3-tuple}}}")  # fmt: skip


def whole(sni: str = "blocked.example") -> bytes:
    return build_initial(QUIC_V1, DCID, [(0, build_client_hello(sni=sni, alpn=[b"h3"]))])


def split(sni: str = "blocked.example") -> tuple[bytes, bytes]:
    """A ClientHello padded past one packet, in two Initial datagrams (Chrome's post-quantum one)."""
    ch = build_client_hello(sni=sni, alpn=[b"h3"], pad=1500)
    half = len(ch) // 2
    first = build_initial(QUIC_V1, DCID, [(0, ch[:half])], pn=0)
    return first, build_initial(QUIC_V1, DCID, [(half, ch[half:])], pn=1)


def test_whole_hello_detection() -> None:
    assert whole_hello_in_first_initial(whole())
    p1, p2 = split()
    assert not whole_hello_in_first_initial(p1) and not whole_hello_in_first_initial(p2)
    assert not whole_hello_in_first_initial(b"\xc0" + bytes(100))
    assert not whole_hello_in_first_initial(b"")


def test_a_whole_hello_from_a_high_port_is_blocked_with_the_3_tuple() -> None:
    p = policy(rules_of(RULE))
    e = engine(p)
    vs = play(e, [(0.0, udp(CALLER, 50000, CALLEE, 443, whole())), (0.1, udp(CALLER, 50000, CALLEE, 443, b"x" * 50)),
                  (1.0, udp(CALLER, 50001, CALLEE, 443, b"new flow, same 3-tuple"))])  # fmt: skip
    assert actions(vs) == ["drop", "drop", "drop"]
    assert p.summary()["rules"][0]["matched_flows"] == 1


def test_a_client_port_below_the_servers_escapes() -> None:
    vs = play(engine(policy(rules_of(RULE))), [(0.0, udp(CALLER, 400, CALLEE, 443, whole()))])
    assert actions(vs) == ["accept"]


def test_a_hello_split_over_two_initials_escapes_although_the_classifier_read_its_sni() -> None:
    p1, p2 = split()
    e = engine(policy(rules_of(RULE)))
    vs = play(e, [(0.0, udp(CALLER, 50000, CALLEE, 443, p1)), (0.01, udp(CALLER, 50000, CALLEE, 443, p2)),
                  (0.1, udp(CALLER, 50000, CALLEE, 443, b"x" * 50))])  # fmt: skip
    assert actions(vs) == ["accept"] * 3
    assert next(iter(e.classifier.table)).sni == "blocked.example"  # reassembled by the classifier
    # Without first_initial_only the same split hello is caught.
    plain = policy(rules_of("{name: q, match: {transport: udp, sni: blocked.example}, action: drop}"))
    e2 = engine(plain)
    assert actions(play(e2, [(0.0, udp(CALLER, 50000, CALLEE, 443, p1)),
                             (0.01, udp(CALLER, 50000, CALLEE, 443, p2))])) == ["accept", "drop"]  # fmt: skip


def test_other_names_pass() -> None:
    vs = play(engine(policy(rules_of(RULE))), [(0.0, udp(CALLER, 50000, CALLEE, 443, whole("fine.example")))])
    assert actions(vs) == ["accept"]


def test_empty_quic_options_are_a_load_error() -> None:
    with pytest.raises(ValueError, match="src_port_above_dst"):
        policy(rules_of("{name: x, match: {quic: {}}, action: drop}"))
