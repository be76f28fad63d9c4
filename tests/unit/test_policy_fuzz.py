"""decide() never raises, whatever the packets (h11's fuzz invariant, applied to the policy)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_policy_support import CALLEE, CALLEE6, CALLER, CALLER6, RELAY, a, engine, policy

from testbed.core.craft import tcp_segment, udp_datagram
from testbed.core.verdict import Action

# Every matcher and action at least once, in rules that overlap.
EVERYTHING = """
lists:
  tg: [relay, 91.108.4.0/22]
rules:
  - {name: sticky-bytes, sticky: true, match: {transport: udp, direction: original, payload: {offset: 1, hex: '00000001'},
     payload_size: {min: 20}}, action: {drop: true, block_after: {for: 5s, key: 3-tuple}}}
  - {name: groups, match: {groups: [x25519, secp256r1, secp384r1]}, action: {reject: rst}}
  - {name: hello-bytes, match: {payload: [{in: client_hello, offset: 0, hex: '0303'}, {in: server_hello, offset: 2, hex: '00', mask: '0f'}]},
     action: {reject: rewrite}}
  - {name: fp, match: {any: [{fingerprint: {ja3: ['x'], ja4: ['y'], ja3s: ['z']}}, {ech: true}, {alpn: [h2]}]}, action: accept}
  - {name: sni, match: {sni: {exact: [a.example], suffix: [b.example], substring: [t.co], regex: ['^c']}}, action: {reject: icmp}}
  - {name: labels, match: {labels: [stun, tls, dtls, tg], not: {initiator: outside}}, action: {cut: {after_packets: 3, from: match, then: reject}}}
  - {name: progress, match: {packet_index: {min: 2, max: 50}, flow_bytes: {max: 100KB}, age: {max: 30s}, handshake: false,
     size: {min: 20}, time: {every: 2s, active: 1s}}, action: {throttle: {rate: 100kbit, mode: shape, backlog: 4KB}, loss: 10%,
     delay: {time: 5ms, jitter: 5ms, distribution: pareto}, direction: both}}
  - {name: police, match: {all: [{addr: {list: tg}}, {port: '1-1024'}]}, action: {throttle: {rate: 50kbit, per: aggregate}, block_after: {for: 1s, key: pair, then: reject}}}
  - {name: ge, match: {dst: [caller, callee, 10.0.0.0/8, 'fd00::/8']}, action: {loss: {model: gilbert-elliott, p: 10%, r: 20%, 1-h: 90%, 1-k: 1%}, delay: 1ms}}
  - {name: ignore, match: {src_port: '0-100'}, action: ignore}
  - {name: reject-all, match: {transport: [tcp, udp, icmp]}, action: {reject: {with: auto, to: server, icmp: net}}}
"""

ADDRS = [CALLER, CALLEE, RELAY, "91.108.4.9"]
ADDRS6 = [CALLER6, CALLEE6]
PREFIXES = [b"", b"\x16\x03\x01", b"\x16\xfe\xfd", b"\x00\x01", b"\xc3\x00\x00\x00\x01", b"\x01\x00\x00\x00"]


@st.composite
def crafted(draw: st.DrawFn) -> bytes:
    v6 = draw(st.booleans())
    pool = ADDRS6 if v6 else ADDRS
    src, dst = draw(st.sampled_from(pool)), draw(st.sampled_from(pool))
    sport, dport = draw(st.sampled_from([0, 53, 443, 3478, 40000])), draw(st.sampled_from([0, 53, 443, 3478, 40000]))
    payload = draw(st.sampled_from(PREFIXES)) + draw(st.binary(max_size=120))
    if draw(st.booleans()):
        return tcp_segment(a(src), a(dst), sport, dport, seq=draw(st.integers(0, 2**32 - 1)),
                           ack=draw(st.integers(0, 2**32 - 1)), flags=draw(st.integers(0, 255)), payload=payload)  # fmt: skip
    return udp_datagram(a(src), a(dst), sport, dport, payload)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    packets=st.lists(st.tuples(st.floats(0, 20, allow_nan=False), st.one_of(crafted(), st.binary(max_size=80))),
                     max_size=40),
    seed=st.integers(0, 2**32),
)  # fmt: skip
def test_decide_never_raises_and_verdicts_are_consistent(packets: list[tuple[float, bytes]], seed: int) -> None:
    p = policy(EVERYTHING, seed=seed)
    e = engine(p)
    for now, data in sorted(packets, key=lambda x: x[0]):
        v = e.handle(data, now)
        if v.action is Action.HOLD:
            assert v.until is not None and v.until > now
    s = p.summary()
    assert sum(r["packets"] for r in s["rules"]) + s["default"]["packets"] <= len(packets)
