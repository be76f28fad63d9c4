"""Every matcher, driven through the real engine (parser + classifier + policy) in virtual time."""

from __future__ import annotations

import struct

import pytest
from _dpi_helpers import build_client_hello, stun_message, tls_record
from test_policy_support import (
    ACK,
    CALLEE,
    CALLEE6,
    CALLER,
    CALLER6,
    RELAY,
    SYN,
    SYNACK,
    engine,
    handshake,
    play,
    policy,
    tcp,
    udp,
)

from testbed.core.dissect.tls import client_hello_fingerprints, parse_client_hello
from testbed.core.policy import PolicyCompileError
from testbed.core.verdict import Action


def rules_of(*rules: str) -> str:
    return "rules:\n" + "".join(f"  - {r}\n" for r in rules)


def decided(text: str, packets: list[tuple[float, bytes]], **kw: object) -> list[str | None]:
    """The deciding rule's name per packet (None: no rule matched)."""
    e = engine(policy(text, **kw))  # type: ignore[arg-type]
    return [v.rule for v in play(e, packets)]


def dtls_server_hello(groups: tuple[int, ...]) -> bytes:
    ext = struct.pack("!HHH", 10, 2 + 2 * len(groups), 2 * len(groups)) + b"".join(struct.pack("!H", g) for g in groups)
    body = b"\xfe\xfd" + bytes(32) + b"\x00" + b"\xc0\x2b" + b"\x00" + struct.pack("!H", len(ext)) + ext
    hs = b"\x02" + len(body).to_bytes(3, "big") + b"\x00\x00" + b"\x00\x00\x00" + len(body).to_bytes(3, "big") + body
    return b"\x16\xfe\xfd" + b"\x00\x00" + b"\x00" * 6 + struct.pack("!H", len(hs)) + hs


def test_empty_match_matches_everything_and_no_rule_means_accept() -> None:
    assert decided(rules_of("{name: all, action: accept}"), [(0, udp(CALLER, 1, CALLEE, 2))]) == ["all"]
    assert decided("rules: []", [(0, udp(CALLER, 1, CALLEE, 2))]) == [None]


def test_labels_any_of() -> None:
    text = rules_of("{name: calls, match: {labels: [whatsapp-call, telegram-call]}, action: drop}",
                    "{name: stun, match: {labels: stun}, action: drop}")  # fmt: skip
    plain = stun_message(0x0001, [])
    wa = stun_message(0x0001, [(0x4000, b"\x00\x00\x00\x01")])
    got = decided(text, [(0, udp(CALLER, 1, CALLEE, 3478, plain)), (0.1, udp(CALLER, 2, CALLEE, 3478, wa)),
                         (0.2, udp(CALLER, 3, CALLEE, 9, b"\x55" * 50))])  # fmt: skip
    assert got == ["stun", "calls", None]


def test_first_match_wins_in_rule_order() -> None:
    text = rules_of("{name: first, match: {transport: udp}, action: accept}", "{name: second, action: drop}")
    assert decided(text, [(0, udp(CALLER, 1, CALLEE, 2)), (0, tcp(CALLER, 1, CALLEE, 2, flags=SYN))]) == [
        "first",
        "second",
    ]


def test_transport_and_ports() -> None:
    text = rules_of(
        "{name: tg, match: {transport: udp, dst_port: ['590-1400', 3478]}, action: drop}",
        "{name: any-port, match: {port: 22}, action: accept}",
        "{name: src, match: {src_port: 5000}, action: accept}",
    )
    got = decided(text, [
        (0, udp(CALLER, 40000, RELAY, 596)), (0, udp(CALLER, 40001, RELAY, 1400)),
        (0, udp(CALLER, 40002, RELAY, 1401)), (0, tcp(CALLER, 40003, RELAY, 596, flags=SYN)),
        (0, udp(CALLER, 40004, RELAY, 3478)), (0, tcp(RELAY, 22, CALLER, 40005, flags=SYN)),
        (0, udp(CALLER, 5000, RELAY, 9)),
    ])  # fmt: skip
    assert got == ["tg", "tg", None, None, "tg", "any-port", "src"]


def test_src_dst_are_the_flows_ends_so_replies_match_too() -> None:
    text = rules_of("{name: to-relay, match: {dst: relay}, action: accept}")
    got = decided(
        text, [(0, udp(CALLER, 1, RELAY, 2)), (0.1, udp(RELAY, 2, CALLER, 1)), (0.2, udp(RELAY, 3, CALLER, 1))]
    )
    # The third flow was started by the relay: its responder is the caller.
    assert got == ["to-relay", "to-relay", None]


def test_addresses_cidrs_nodes_and_lists() -> None:
    text = """
lists:
  hosting: {file: hosting.txt}
  telegram: [relay, 91.108.4.0/22]
rules:
  - {name: cidr, match: {dst: 10.0.2.0/24}, action: accept}
  - {name: tg, match: {dst: {list: telegram}}, action: accept}
  - {name: host, match: {addr: {list: hosting}}, action: accept}
  - {name: v6node, match: {dst: callee}, action: accept}
"""
    files = {"hosting.txt": "# a file list\n203.0.113.0/24\n"}
    got = decided(text, [
        (0, udp(CALLER, 1, CALLEE, 2)), (0, udp(CALLER, 1, RELAY, 2)), (0, udp(CALLER, 1, "91.108.5.1", 2)),
        (0, udp("203.0.113.9", 1, CALLER, 2)), (0, udp(CALLER6, 1, CALLEE6, 2)), (0, udp(CALLER, 1, "8.8.8.8", 2)),
    ], files=files)  # fmt: skip
    assert got == ["cidr", "tg", "tg", "host", "v6node", None]


def test_shipped_lists_are_used_when_not_declared() -> None:
    text = rules_of("{name: tg, match: {dst: {list: telegram}}, action: drop}")
    assert decided(text, [(0, udp(CALLER, 1, "149.154.167.51", 443)), (0, udp(CALLER, 1, RELAY, 443))]) == ["tg", None]


def test_compile_errors_for_unknown_names() -> None:
    with pytest.raises(PolicyCompileError, match="unknown node 'ghost'"):
        policy(rules_of("{name: a, match: {dst: ghost}, action: drop}"))
    with pytest.raises(PolicyCompileError, match="unknown address list 'nope'"):
        policy(rules_of("{name: a, match: {dst: {list: nope}}, action: drop}"))
    with pytest.raises(PolicyCompileError, match="unknown label 'whatsap-call'"):
        policy(rules_of("{name: a, match: {labels: [whatsap-call]}, action: drop}"))
    with pytest.raises(PolicyCompileError, match="hosting.txt"):
        policy("lists: {hosting: {file: hosting.txt}}\nrules: []", files={"hosting.txt": "not-a-cidr\n"})


def test_initiator_side_as_tspu_keys_on() -> None:
    # TSPU only censors connections initiated from inside (censor-behaviors.md A.1).
    text = rules_of("{name: inside, match: {initiator: inside}, action: drop}",
                    "{name: outside, match: {initiator: outside}, action: accept}")  # fmt: skip
    got = decided(text, [(0, udp(CALLER, 1, CALLEE, 2)), (0.1, udp(CALLEE, 2, CALLER, 1)),
                         (0.2, udp(CALLEE, 7, CALLER, 8)), (0.3, udp(CALLER, 8, CALLEE, 7))])  # fmt: skip
    assert got == ["inside", "inside", "outside", "outside"]


@pytest.mark.parametrize(
    ("direction", "want"),
    [("original", ["r", None, "r", None]), ("reply", [None, "r", None, "r"]),
     ("outbound", ["r", None, None, "r"]), ("inbound", [None, "r", "r", None])],
)  # fmt: skip
def test_packet_direction(direction: str, want: list[str | None]) -> None:
    text = rules_of(f"{{name: r, match: {{direction: {direction}}}, action: accept}}")
    pk = [
        (0.0, udp(CALLER, 1, CALLEE, 2)),  # inside-initiated flow: original, outbound
        (0.1, udp(CALLEE, 2, CALLER, 1)),  # its reply: inbound
        (0.2, udp(CALLEE, 7, CALLER, 8)),  # outside-initiated flow: original, inbound
        (0.3, udp(CALLER, 8, CALLEE, 7)),  # its reply: outbound
    ]
    assert decided(text, pk) == want


def _tls_flow(sni: str, *, cport: int = 40000, alpn: list[bytes] | None = None, ech: bool = False,
              groups: tuple[int, ...] = (0x1A1A, 0x001D, 0x0017)) -> list[tuple[float, bytes]]:  # fmt: skip
    ch = tls_record(build_client_hello(sni=sni, alpn=alpn, ech=ech, groups=groups))
    pk = handshake(CALLER, cport, CALLEE, 443)
    pk.append((0.01, tcp(CALLER, cport, CALLEE, 443, seq=1000, ack=5000, payload=ch)))
    pk.append((0.02, tcp(CALLEE, 443, CALLER, cport, seq=5000, ack=1000 + len(ch), payload=b"s" * 100)))
    return pk


@pytest.mark.parametrize(
    ("sni", "hit"),
    [("twitter.com", "suffix"), ("API.Twitter.com", "suffix"), ("nottwitter.com", None),
     ("twitter.com.", None),  # a trailing dot evaded TSPU (B.9)
     ("www.microsoft.com", "substring"),  # the t.co bug (B.7)
     ("exact.example", "exact"), ("x.exact.example", None), ("cdn42.googlevideo.com", "regex")],
)  # fmt: skip
def test_sni_exact_suffix_substring_regex(sni: str, hit: str | None) -> None:
    text = rules_of(
        "{name: exact, match: {sni: exact.example}, action: drop}",
        "{name: suffix, match: {sni: {suffix: [twitter.com]}}, action: drop}",
        "{name: substring, match: {sni: {substring: [t.co]}}, action: drop}",
        "{name: regex, match: {sni: {regex: ['^cdn[0-9]+\\.googlevideo\\.com$']}}, action: drop}",
    )
    got = decided(text, _tls_flow(sni))
    # Handshake packets carry no SNI yet; the ClientHello and everything after match.
    assert got[:3] == [None, None, None] and got[3:] == [hit, hit]


def test_alpn_and_ech() -> None:
    text = rules_of(
        "{name: ech, match: {sni: cloudflare-ech.com, ech: true}, action: drop}",  # G.18
        "{name: h2, match: {alpn: [h2]}, action: accept}",
    )
    assert decided(text, _tls_flow("cloudflare-ech.com", ech=True))[3] == "ech"
    assert decided(text, _tls_flow("cloudflare-ech.com", ech=False))[3] is None
    assert decided(text, _tls_flow("a.example", alpn=[b"h2", b"http/1.1"], ech=True))[3] == "h2"


def test_fingerprints_by_hash_or_string() -> None:
    fp = client_hello_fingerprints(parse_client_hello(build_client_hello(sni="a.example")) or _no(), "t")
    text = rules_of(
        f"{{name: by-ja3-hash, match: {{fingerprint: {{ja3: ['{fp['ja3_hash'].upper()}']}}}}, action: accept}}",
    )
    assert decided(text, _tls_flow("a.example"))[3] == "by-ja3-hash"
    text = rules_of(f"{{name: by-ja4, match: {{fingerprint: {{ja4: ['{fp['ja4_r']}']}}}}, action: accept}}")
    assert decided(text, _tls_flow("a.example"))[3] == "by-ja4"
    assert decided(text, _tls_flow("a.example", groups=(0x17, 0x1D)))[3] is not None  # JA4 ignores group order
    text = rules_of("{name: other, match: {fingerprint: {ja3: ['00000000000000000000000000000000']}}, action: accept}")
    assert decided(text, _tls_flow("a.example"))[3] is None


def _no() -> object:
    raise AssertionError("the helper's ClientHello must parse")


def test_groups_order_in_a_dtls_server_hello_snowflake_2021() -> None:
    # pion's ServerHello carried supported_groups x25519, P-256, P-384 (H.19).
    text = rules_of("{name: snowflake, match: {groups: {order: [x25519, secp256r1, secp384r1], hello: server}}, "
                    "action: drop}")  # fmt: skip
    client_first = udp(CALLEE, 5000, CALLER, 6000, b"\x00\x01\x00\x00" + bytes(16))  # outside speaks first
    pion = udp(CALLER, 6000, CALLEE, 5000, dtls_server_hello((29, 23, 24)))
    fixed = udp(CALLER, 6001, CALLEE, 5001, dtls_server_hello((23, 29, 24)))
    later = udp(CALLER, 6000, CALLEE, 5000, b"\x17\xfe\xfd" + bytes(40))
    assert decided(text, [(0, client_first), (0.1, pion), (0.2, later), (0.3, fixed)]) == [
        None,
        "snowflake",
        "snowflake",
        None,
    ]


def test_groups_order_in_a_client_hello_from_the_ja3_string() -> None:
    text = rules_of("{name: ch, match: {groups: {order: [x25519, secp256r1], hello: client}}, action: drop}")
    assert decided(text, _tls_flow("a.example", groups=(0x1A1A, 29, 23)))[3] == "ch"
    assert decided(text, _tls_flow("a.example", groups=(23, 29)))[3] is None


def test_bytes_at_offset_quic_2022_rule() -> None:
    # Outbound UDP to :443, payload >= 1001 B, bytes 1-4 = 00 00 00 01 (C.10), then the 5-tuple.
    text = rules_of(
        "{name: quic, sticky: true, match: {transport: udp, dst_port: 443, direction: original, "
        "payload_size: {min: 1001}, payload: {offset: 1, hex: '00000001'}}, action: drop}"
    )
    initial = b"\xc3\x00\x00\x00\x01" + bytes(1200)
    short = b"\xc3\x00\x00\x00\x01" + bytes(500)
    other = b"\xc3\xff\x00\x00\x1d" + bytes(1200)
    got = decided(text, [(0, udp(CALLER, 1, CALLEE, 443, initial)), (0.1, udp(CALLEE, 443, CALLER, 1, bytes(50))),
                         (0.2, udp(CALLER, 2, CALLEE, 443, short)), (0.3, udp(CALLER, 3, CALLEE, 443, other))])  # fmt: skip
    # The sticky rule keeps the blocked flow, replies included; the short Initial does not match.
    assert got == ["quic", "quic", None, None]


def test_bytes_non_sticky_only_the_packet_and_mask() -> None:
    text = rules_of("{name: wg, match: {payload: {offset: 0, hex: '01000000', mask: 'ff00ffff'}}, action: drop}")
    got = decided(text, [(0, udp(CALLER, 1, CALLEE, 51820, b"\x01\x42\x00\x00" + bytes(144))),
                         (0.1, udp(CALLER, 1, CALLEE, 51820, b"\x04\x00\x00\x00" + bytes(40)))])  # fmt: skip
    assert got == ["wg", None]


def test_bytes_in_a_client_hello_body() -> None:
    # Offset 0 of the body is legacy_version (03 03); 34 is the session id length.
    text = rules_of("{name: ch, match: {payload: {in: client_hello, offset: 0, hex: '0303'}}, action: accept}")
    assert decided(text, _tls_flow("a.example"))[3] == "ch"
    text = rules_of("{name: ch, match: {payload: {in: server_hello, offset: 0, hex: '0303'}}, action: accept}")
    assert decided(text, _tls_flow("a.example"))[3] is None


def test_payload_matchers_stop_after_the_inspection_budget() -> None:
    text = "policy: {inspect_packets: 3}\n" + rules_of("{name: late, match: {payload: {hex: 'abcd'}}, action: drop}")
    pk = [(i * 0.01, udp(CALLER, 1, CALLEE, 2, b"\x00" * 10)) for i in range(3)]
    pk.append((0.1, udp(CALLER, 1, CALLEE, 2, b"\xab\xcd")))
    assert decided(text, pk) == [None, None, None, None]  # junk first defeats a lazy DPI (F.14)


def test_sizes_and_flow_progress() -> None:
    text = rules_of(
        "{name: big, match: {size: {min: 229}}, action: accept}",  # IP length
        "{name: small-payload, match: {payload_size: {max: 10}}, action: accept}",
        "{name: third, match: {packet_index: 3}, action: accept}",
        "{name: bytes, match: {flow_bytes: {min: 700}}, action: accept}",
        "{name: old, match: {age: {min: 5s}}, action: accept}",
    )
    pk = [(0.0, udp(CALLER, 1, CALLEE, 2, bytes(200))), (0.1, udp(CALLER, 1, CALLEE, 2, bytes(5))),
          (0.2, udp(CALLER, 1, CALLEE, 2, bytes(100))), (0.3, udp(CALLER, 1, CALLEE, 2, bytes(100))),
          (0.4, udp(CALLER, 1, CALLEE, 2, bytes(100))), (6.0, udp(CALLER, 1, CALLEE, 2, bytes(100))),
          (6.1, udp(CALLER, 1, CALLEE, 2, bytes(201)))]  # fmt: skip
    # sizes: 228, 33, 128 x4, 229. flow bytes after each: 228, 261, 389, 517, 645, 773, 1002.
    assert decided(text, pk) == [None, "small-payload", "third", None, None, "bytes", "big"]


def test_handshake_completed() -> None:
    text = rules_of("{name: after-hs, match: {handshake: true, transport: tcp}, action: accept}",
                    "{name: udp-both, match: {handshake: true}, action: accept}")  # fmt: skip
    pk = handshake(CALLER, 1, CALLEE, 80)
    pk.append((0.1, tcp(CALLER, 1, CALLEE, 80, seq=1000, ack=5000, payload=b"GET /")))
    pk += [(0.2, udp(CALLER, 5, CALLEE, 6)), (0.3, udp(CALLEE, 6, CALLER, 5))]
    assert decided(text, pk) == [None, None, "after-hs", "after-hs", None, "udp-both"]


def test_handshake_needs_the_syn_ack_from_the_responder() -> None:
    text = rules_of("{name: hs, match: {handshake: true}, action: accept}")
    pk = [(0, tcp(CALLER, 1, CALLEE, 80, flags=SYN)), (0.1, tcp(CALLER, 1, CALLEE, 80, flags=ACK)),
          (0.2, tcp(CALLEE, 80, CALLER, 1, flags=SYNACK)), (0.3, tcp(CALLER, 1, CALLEE, 80, flags=ACK))]  # fmt: skip
    assert decided(text, pk) == [None, None, None, "hs"]


def test_time_window_and_periodic_cycle_relative_to_start() -> None:
    text = rules_of("{name: window, match: {time: {from: 10s, until: 20s}}, action: drop}",
                    "{name: cycle, match: {time: {from: 30s, every: 10s, active: 4s}}, action: drop}")  # fmt: skip
    times = [5, 10, 19.9, 20, 30, 33.9, 34, 40, 45]
    got = decided(text, [(100 + t, udp(CALLER, 1, CALLEE, 2)) for t in times], start=100.0)
    assert got == [None, "window", "window", None, "cycle", "cycle", None, "cycle", None]


def test_not_any_all() -> None:
    # Allowlist mode (G.17): TLS to anything but the allowed names is dropped; SYNs pass.
    text = rules_of(
        "{name: allow, match: {labels: [tls], not: {sni: {suffix: [allowed.example]}}}, action: drop}",
        "{name: either, match: {any: [{dst_port: 53}, {labels: [stun]}]}, action: accept}",
        "{name: both, match: {all: [{transport: udp}, {size: {min: 500}}]}, action: accept}",
    )
    got = decided(text, _tls_flow("www.allowed.example") + _tls_flow("blocked.example", cport=40001))
    assert got == [None] * 5 + [None, None, None, "allow", "allow"]
    got = decided(text, [(0, udp(CALLER, 1, CALLEE, 53)), (0, udp(CALLER, 2, CALLEE, 3478, stun_message(1, []))),
                         (0, udp(CALLER, 3, CALLEE, 9, bytes(600))), (0, udp(CALLER, 4, CALLEE, 9, bytes(60)))])  # fmt: skip
    assert got == ["either", "either", "both", None]


def test_nested_static_matchers_work_inside_not() -> None:
    text = rules_of("{name: not-relay, match: {transport: udp, not: {dst: relay}}, action: drop}")
    assert decided(text, [(0, udp(CALLER, 1, RELAY, 2)), (0, udp(CALLER, 1, CALLEE, 2))]) == [None, "not-relay"]


def test_verdict_actions_for_matches() -> None:
    e = engine(policy(rules_of("{name: d, match: {dst: relay}, action: drop}")))
    assert [v.action for v in play(e, [(0, udp(CALLER, 1, RELAY, 2)), (0, udp(CALLER, 1, CALLEE, 2))])] == [
        Action.DROP,
        Action.ACCEPT,
    ]


def test_family_matches_the_flows_ip_version() -> None:
    # A censor that inspects only IPv4 (issue 13): IPv6 flows between the same nodes pass it.
    text = rules_of(
        "{name: v4-only, match: {family: v4, transport: udp}, action: drop}",
        "{name: v6, match: {family: v6}, action: accept}",
    )
    got = decided(text, [
        (0, udp(CALLER, 1, CALLEE, 2)), (0, udp(CALLER6, 1, CALLEE6, 2)),
        (0, tcp(CALLER6, 40000, CALLEE6, 443, flags=SYN)), (0, tcp(CALLER, 40000, CALLEE, 443, flags=SYN)),
    ])  # fmt: skip
    assert got == ["v4-only", "v6", "v6", None]


def test_family_is_checked_by_the_schema_and_survives_the_ir() -> None:
    from test_policy_support import ir, spec

    with pytest.raises(ValueError, match="family"):
        spec(rules_of("{name: x, match: {family: ipv6}, action: drop}"))
    from testbed.core.policy_ir import PolicyIR
    from testbed.core.policy_kinds import Family

    got = ir(rules_of("{name: x, match: {not: {family: v6}}, action: drop}"))
    assert got.rules[0].match.not_ is not None and got.rules[0].match.not_.family is Family.V6
    assert PolicyIR.from_json(got.to_json()) == got
    text = rules_of("{name: not-v6, match: {not: {family: v6}}, action: drop}")
    assert decided(text, [(0, udp(CALLER6, 1, CALLEE6, 2)), (0, udp(CALLER, 1, CALLEE, 2))]) == [None, "not-v6"]
