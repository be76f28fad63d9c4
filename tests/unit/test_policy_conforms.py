"""``conforms`` (censor-behaviors.md H.24): the client's first data packets, joined as they came,
look like TLS, HTTP or DNS -- Iran's protocol filter judged the first two together (FOCI 2020)."""

from __future__ import annotations

import pytest
from _dpi_helpers import build_client_hello, tls_record
from test_policy_iran import HTTP_GET, JUNK, _dns_tcp_query, actions, client_data, rules_of
from test_policy_support import CALLEE, CALLER, engine, handshake, play, policy

from testbed.core.policy.matchers.conforms import Protocol, conforms

ALL = frozenset(Protocol)
# The filter as measured: judged at the 2nd data packet on the two joined; the first passes.
IRAN = ("{name: iran, match: {transport: tcp, dst_port: [53, 80, 443], initiator: inside, data_packet: 2, "
        "not: {conforms: [tls, http, dns]}}, "
        "action: {drop: true, block_after: {for: 60s, key: 3-tuple, restart: true}}}")  # fmt: skip


@pytest.mark.parametrize(
    ("data", "want"),
    [(HTTP_GET, True), (b"GET / H", False), (b"GET /abc", True), (b"POST /x HTTP/1.1", True),
     (b"OPTIONS * HTTP/1.1", True), (b"get / HTTP/1.1", False), (b"FETCH / HTTP/1.1", False),
     (tls_record(build_client_hello(sni="a.example")), True), (b"\x16\x03\x01\x02\x00\x02", False),
     (b"\x16\x03\x04", False), (b"\x16\x03", False), (_dns_tcp_query(), True),
     (b"\x00\x1d\x42\x42\x81\x80" + bytes(8), False), (JUNK, False), (b"", False)],
)  # fmt: skip
def test_fingerprints(data: bytes, want: bool) -> None:
    assert conforms(data, ALL) is want


def test_only_the_protocols_asked_for() -> None:
    assert conforms(HTTP_GET, frozenset({Protocol.HTTP}))
    assert not conforms(HTTP_GET, frozenset({Protocol.TLS, Protocol.DNS}))


def _two(cport: int, first: bytes, second: bytes, t: float = 0.0) -> list[tuple[float, bytes]]:
    return handshake(CALLER, cport, CALLEE, 443, t=t) + [
        client_data(cport, first, t=t + 0.01),
        client_data(cport, first, t=t + 0.015),  # a retransmission: not joined twice
        client_data(cport, second, t=t + 0.02, seq=1000 + len(first)),
        client_data(cport, b"later", t=t + 0.03, seq=1000 + len(first) + len(second)),
    ]


def test_an_http_method_split_over_two_segments_conforms_only_when_joined() -> None:
    first, second = HTTP_GET[:2], HTTP_GET[2:]  # "GE" + "T / HTTP/1.1 ..."
    assert actions(play(engine(policy(rules_of(IRAN))), _two(1, first, second))) == ["accept"] * 7
    # With one packet judged (packets: 1) the same flow does not conform.
    one = IRAN.replace("conforms: [tls, http, dns]", "conforms: {protocols: [tls, http, dns], packets: 1}")
    assert actions(play(engine(policy(rules_of(one))), _two(1, first, second)))[-2:] == ["drop", "drop"]


def test_junk_first_passes_and_the_second_packet_is_dropped() -> None:
    p = policy(rules_of(IRAN))
    e = engine(p)
    vs = play(e, _two(1, JUNK[:32], JUNK[32:]))
    assert actions(vs) == ["accept"] * 5 + ["drop", "drop"]  # "every packet after the first"
    assert p.summary()["rules"][0]["drops"] == {"drop": 1, "residual": 1}


def test_the_rule_need_not_see_the_first_packet() -> None:
    # A rule before it decides the first data packet; conforms still reads it.
    text = rules_of("{name: first, match: {data_packet: 1}, action: accept}", IRAN)
    assert actions(play(engine(policy(text)), _two(1, HTTP_GET[:2], HTTP_GET[2:]))) == ["accept"] * 7


@pytest.mark.parametrize(
    ("bad", "needle"), [("[ssh]", "tls"), ("[]", "at least one"), ("{protocols: [tls], packets: 0}", "packets")]
)
def test_bad_values_are_load_errors(bad: str, needle: str) -> None:
    with pytest.raises(ValueError, match="conforms") as err:
        policy(rules_of(f"{{name: x, match: {{conforms: {bad}}}, action: drop}}"))
    assert needle in str(err.value)
