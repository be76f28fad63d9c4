"""Fully encrypted traffic (censor-behaviors.md I.26; Wu et al., USENIX Security 2023): the five
exemptions on both sides of every threshold, the first-data-packet scope, the seeded per-flow
probability, and the GFW's residual block (client-3-tuple, client->server only, 180 s)."""

from __future__ import annotations

import hashlib
import random

import pytest
from _dpi_helpers import build_client_hello, tls_record
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from test_policy_iran import HTTP_GET, actions, client_data, rules_of, server_data
from test_policy_support import CALLEE, CALLER, RELAY, engine, handshake, play, policy, tcp, udp

from testbed.core.policy.matchers.encrypted import Exemption, FetThresholds, FullyEncryptedMatch, exemption

TH = FetThresholds()
# Non-printable bytes with exactly 4 set bits: random data averages 4 bits per byte too.
FOUR = bytes([0x0F, 0x87, 0x8D, 0xF0, 0x99, 0xA5, 0xC3, 0x1E, 0x96, 0xE1])
assert all(b < 0x20 or b > 0x7E for b in FOUR) and all(b.bit_count() == 4 for b in FOUR)


def neutral(n: int) -> bytes:
    """n bytes that no exemption likes: none printable, 4.0 bits per byte, no TLS/HTTP prefix."""
    return (FOUR * (n // len(FOUR) + 1))[:n]


def random_bytes(n: int, seed: int = 7) -> bytes:
    return random.Random(seed).randbytes(n)


def shadowsocks_first_packet(seed: int = 1) -> bytes:
    """What a Shadowsocks AEAD client (chacha20-ietf-poly1305) sends first: a random 32-byte
    salt, the encrypted 2-byte length and its tag, then the encrypted target address and data."""
    rng = random.Random(seed)
    salt = rng.randbytes(32)
    key = hashlib.sha256(b"password" + salt).digest()  # stands in for HKDF-SHA1: any key will do
    aead = ChaCha20Poly1305(key)
    target = b"\x03\x0bexample.com\x01\xbb" + HTTP_GET
    chunk = aead.encrypt((0).to_bytes(12, "little"), len(target).to_bytes(2, "big"), None)
    body = aead.encrypt((1).to_bytes(12, "little"), target, None)
    return salt + chunk + body


# --- the exemptions ---------------------------------------------------------------------------


def test_neutral_bytes_are_not_exempt() -> None:
    assert exemption(neutral(200), TH) is None


@pytest.mark.parametrize(
    ("total_bits", "want"),
    [(34, Exemption.POPCOUNT), (35, None), (45, None), (46, Exemption.POPCOUNT)],
    ids=["3.4-exempt", "3.5-blocked", "4.5-blocked", "4.6-exempt"],
)
def test_ex1_popcount_both_thresholds(total_bits: int, want: Exemption | None) -> None:
    # 10 non-printable bytes of 4 bits each (40), then |delta| of them with one bit less or more.
    delta = total_bits - 40
    other = 0x07 if delta < 0 else 0x1F  # 3 or 5 bits, non-printable
    data = bytes([other] * abs(delta)) + neutral(10 - abs(delta))
    assert sum(b.bit_count() for b in data) == total_bits
    assert all(b < 0x20 or b > 0x7E for b in data)
    assert exemption(bytes(data), TH) is want


@pytest.mark.parametrize(("prefix", "want"), [(b"abcdef", Exemption.PRINTABLE_PREFIX), (b"abcde", None)])
def test_ex2_printable_prefix_of_six(prefix: bytes, want: Exemption | None) -> None:
    assert exemption(prefix + neutral(100), TH) is want


def _interleaved(printable: int, total: int) -> bytes:
    """``printable`` printable bytes spread among non-printable ones, starting non-printable, no
    two printable bytes adjacent unless there are more than half."""
    out = bytearray(neutral(total))
    spots = list(range(1, total, 2))
    extra = [i for i in range(0, total, 2) if i > 6]
    for i in (spots + extra)[:printable]:
        out[i] = ord("U")  # 0x55: 4 bits, like its neighbours
    return bytes(out)


@pytest.mark.parametrize(("printable", "want"), [(50, None), (51, Exemption.PRINTABLE_SHARE)])
def test_ex3_more_than_half_printable(printable: int, want: Exemption | None) -> None:
    data = _interleaved(printable, 100)
    assert sum(0x20 <= b <= 0x7E for b in data) == printable
    assert exemption(data, TH) is want


@pytest.mark.parametrize(("run", "want"), [(20, None), (21, Exemption.PRINTABLE_RUN)])
def test_ex4_printable_run_longer_than_twenty(run: int, want: Exemption | None) -> None:
    assert exemption(neutral(30) + b"U" * run + neutral(60), TH) is want


@pytest.mark.parametrize(
    ("head", "want"),
    [(b"\x16\x03\x01", Exemption.PROTOCOL), (b"\x17\x03\x03", Exemption.PROTOCOL),
     (b"\x16\x03\x09", Exemption.PROTOCOL),
     (b"\x16\x03\x0a", None), (b"\x15\x03\x01", None), (b"\x18\x03\x01", None), (b"\x16\x02\x01", None),
     (b"GET ", Exemption.PROTOCOL), (b"POST ", Exemption.PROTOCOL), (b"HEAD ", Exemption.PROTOCOL),
     (b"PUT ", Exemption.PROTOCOL), (b"GET", None), (b"GOT ", None)],
)  # fmt: skip
def test_ex5_tls_and_http_fingerprints(head: bytes, want: Exemption | None) -> None:
    assert exemption(head + neutral(100), TH) is want


def test_real_payloads() -> None:
    assert exemption(random_bytes(600), TH) is None
    assert exemption(shadowsocks_first_packet(), TH) is None
    assert exemption(tls_record(build_client_hello(sni="site.example")), TH) is not None
    assert exemption(HTTP_GET, TH) is not None


def test_thresholds_are_parameters() -> None:
    loose = FetThresholds(popcount_low=3.0, popcount_high=5.0, printable_prefix=4, printable_share=0.8,
                          printable_run=30)  # fmt: skip
    assert exemption(b"abcd" + neutral(100), loose) is Exemption.PRINTABLE_PREFIX
    assert exemption(neutral(30) + b"U" * 25 + neutral(60), loose) is None
    assert exemption(_interleaved(60, 100), loose) is None


# --- the matcher through the engine -----------------------------------------------------------

RULE = ("{name: fet, match: {transport: tcp, fully_encrypted: {probability: 1.0}}, "
        "action: {drop: true, block_after: {for: 180s, key: client-3-tuple, direction: to-server}}}")  # fmt: skip


def _flow(cport: int, first: bytes, *, t: float, client: str = CALLER, dport: int = 443) -> list[tuple[float, bytes]]:
    return handshake(client, cport, CALLEE, dport, t=t) + [
        (t + 0.01, tcp(client, cport, CALLEE, dport, seq=1000, payload=first)),
    ]


def test_only_the_first_client_data_packet_is_judged() -> None:
    p = policy(rules_of("{name: fet, match: {fully_encrypted: {probability: 1.0}}, action: drop}"))
    junk = random_bytes(300)
    pk = handshake(CALLER, 1, CALLEE, 443) + [
        server_data(1, junk, t=0.01),  # the server's data: never judged
        client_data(1, HTTP_GET, t=0.02),  # first client data: exempt
        client_data(1, junk, t=0.03, seq=1000 + len(HTTP_GET)),  # second: too late
        (0.04, udp(CALLER, 5, CALLEE, 443, junk)),  # UDP: the check is TCP's
    ]
    assert [v.rule for v in play(engine(p), pk)] == [None] * 7


def test_random_first_data_is_blocked_with_the_gfw_residual() -> None:
    p = policy(rules_of(RULE))
    e = engine(p)
    vs = play(e, _flow(1, random_bytes(300), t=0.0) + [
        server_data(1, b"late reply", t=0.1),  # server->client still passes (one-way block)
        client_data(1, b"more", t=0.2, seq=1300),  # client->server dropped
    ])  # fmt: skip
    assert actions(vs) == ["accept", "accept", "accept", "drop", "accept", "drop"]
    # A new connection from the same client to the same server port: its SYN is dropped; the
    # SYN/ACK the server would send is not (it never comes in reality).
    again = play(e, [(10.0, tcp(CALLER, 2, CALLEE, 443, flags=2, seq=1, ack=0)),
                     (10.01, tcp(CALLEE, 443, CALLER, 2, flags=18, seq=5, ack=2))])  # fmt: skip
    assert actions(again) == ["drop", "accept"]
    # Other clients, other ports of the server: untouched.
    others = play(e, handshake(RELAY, 3, CALLEE, 443, t=11.0) + handshake(CALLER, 4, CALLEE, 80, t=12.0))
    assert actions(others) == ["accept"] * 6
    # 180 s later the 3-tuple is free again (a fresh connection with exempt data).
    later = play(e, _flow(5, HTTP_GET, t=180.02))  # set at 0.01
    assert actions(later) == ["accept"] * 4
    r = p.summary()["rules"][0]
    assert r["matched_flows"] == 1 and r["drops"] == {"drop": 1, "residual": 2}


@pytest.mark.parametrize("first", [b"tls", b"http", b"ss"])
def test_exempt_or_encrypted_real_first_packets(first: bytes) -> None:
    payload = {b"tls": tls_record(build_client_hello(sni="site.example")), b"http": HTTP_GET,
               b"ss": shadowsocks_first_packet()}[first]  # fmt: skip
    vs = play(engine(policy(rules_of(RULE))), _flow(1, payload, t=0.0))
    assert actions(vs)[-1] == ("drop" if first == b"ss" else "accept")


def test_probability_zero_never_matches_and_default_is_the_papers() -> None:
    p0 = policy(rules_of("{name: fet, match: {fully_encrypted: {probability: 0}}, action: drop}"))
    e = engine(p0)
    for port in range(1, 200):
        assert actions(play(e, _flow(port, random_bytes(200, port), t=port)))[-1] == "accept"
    default = policy(rules_of("{name: fet, match: {fully_encrypted: true}, action: drop}")).rules[0].dynamic[0]
    assert isinstance(default, FullyEncryptedMatch) and default.probability == pytest.approx(0.263)


def _blocked_ports(seed: int, n: int = 2000, probability: str = "26.3%") -> set[int]:
    p = policy(rules_of(f"{{name: fet, match: {{fully_encrypted: {{probability: '{probability}'}}}}, action: drop}}"),
               seed=seed)  # fmt: skip
    e = engine(p)
    blocked = set()
    junk = random_bytes(200)
    for port in range(1000, 1000 + n):
        if actions(play(e, _flow(port, junk, t=port * 0.01)))[-1] == "drop":
            blocked.add(port)
    return blocked


def test_probability_statistics_and_reproducibility() -> None:
    a1 = _blocked_ports(seed=1)
    # 2000 flows at p = 0.263: sd ~ 0.0098; 4 sd either side.
    assert 0.223 <= len(a1) / 2000 <= 0.303
    assert _blocked_ports(seed=1) == a1  # same seed, same traffic: the same flows
    a2 = _blocked_ports(seed=2)
    assert a2 != a1 and 0.223 <= len(a2) / 2000 <= 0.303


def test_a_retransmitted_first_packet_gets_the_same_draw() -> None:
    p = policy(rules_of("{name: fet, match: {fully_encrypted: {probability: 50%}}, action: drop}"))
    e = engine(p)
    junk = random_bytes(200)
    for port in range(1, 60):
        pk = _flow(port, junk, t=port) + [(port + 0.5, tcp(CALLER, port, CALLEE, 443, seq=1000, payload=junk))]
        v = actions(play(e, pk))
        assert v[-1] == v[-2]


@pytest.mark.parametrize(
    ("bad", "needle"),
    [("false", "not: {fully_encrypted"), ("{popcount: [4.6, 3.4]}", "low < high"),
     ("{probability: 2}", "outside"), ("{printable_run: -1}", "printable_run"), ("{entropy: 1}", "entropy")],
)  # fmt: skip
def test_bad_values_are_load_errors(bad: str, needle: str) -> None:
    with pytest.raises(ValueError, match="fully_encrypted") as err:
        policy(rules_of(f"{{name: x, match: {{fully_encrypted: {bad}}}, action: drop}}"))
    assert needle in str(err.value)


def test_block_after_direction_is_validated() -> None:
    with pytest.raises(ValueError, match="direction"):
        policy(rules_of("{name: x, action: {drop: true, block_after: {for: 1s, direction: inbound}}}"))
