"""core.classify: labels from crafted traffic, app attribution, endpoint carry, budgets."""

from __future__ import annotations

import struct

import pytest
from _dpi_helpers import build_client_hello, stun_message, tcp4, tls_record, udp4

from testbed.core.classify import Classifier
from testbed.core.flow import Direction
from testbed.core.labels import AddressList
from testbed.core.packet import parse_ip

CLIENT = "192.168.1.10"
WA_RELAY = "31.13.86.48"  # Meta address, not in the WhatsApp front-end list
TG_REFLECTOR = "91.108.9.35"


def rtp(seq: int, ssrc: int = 0x1234) -> bytes:
    return struct.pack("!BBHII", 0x80, 111, seq, seq * 960, ssrc) + b"\x42" * 80


def feed(c: Classifier, raws: list[bytes], t0: float = 0.0) -> None:
    for i, raw in enumerate(raws):
        c.observe(parse_ip(raw), t0 + i * 0.01)


def flow_of(c: Classifier, a: str, ap: int, b: str, bp: int):  # type: ignore[no-untyped-def]
    f = c.table.get(parse_ip(udp4(a, ap, b, bp, b"")))
    assert f is not None
    return f


def test_whatsapp_call_stun_then_media_carried_by_local_endpoint() -> None:
    c = Classifier()
    alloc = stun_message(0x0003, [(0x4000, b"\x05" * 20)])
    resp = stun_message(0x0103, [(0x0020, b"\x00\x01\x00\x00\x00\x00\x00\x00"), (0x4002, b"\x00" * 8)])
    feed(c, [udp4(CLIENT, 56328, WA_RELAY, 3478, alloc), udp4(WA_RELAY, 3478, CLIENT, 56328, resp)])
    relay_flow = flow_of(c, CLIENT, 56328, WA_RELAY, 3478)
    assert {"stun", "whatsapp-call", "whatsapp"} <= relay_flow.labels
    # the peer's media arrives on the same local port: same call
    peer = "91.252.56.51"
    feed(c, [udp4(peer, 32704, CLIENT, 56328, rtp(i)) for i in range(5)], t0=1.0)
    media = flow_of(c, peer, 32704, CLIENT, 56328)
    assert {"rtp", "whatsapp-call"} <= media.labels and media.initiator == f"{peer}:32704"


def test_endpoint_cache_expires_and_is_bounded() -> None:
    c = Classifier(endpoint_cache_ttl=5.0, endpoint_cache_size=1)
    feed(c, [udp4(CLIENT, 1000, WA_RELAY, 3478, stun_message(0x0800, []))])
    assert "whatsapp-call" in flow_of(c, CLIENT, 1000, WA_RELAY, 3478).labels
    feed(c, [udp4(CLIENT, 1000, "203.0.113.9", 4000, rtp(1))], t0=100.0)  # too late
    assert "whatsapp-call" not in flow_of(c, CLIENT, 1000, "203.0.113.9", 4000).labels
    assert len(c.endpoint_cache) <= 1


def test_telegram_realm_and_reflector() -> None:
    c = Classifier()
    msg = stun_message(0x0003, [(0x0014, b"Telegram")])
    feed(c, [udp4(CLIENT, 40000, "198.51.100.1", 3478, msg)])
    assert "telegram-call" in flow_of(c, CLIENT, 40000, "198.51.100.1", 3478).labels
    feed(c, [udp4(CLIENT, 40001, TG_REFLECTOR, 1400, b"\x00" * 40)])
    assert {"telegram-call", "telegram"} <= flow_of(c, CLIENT, 40001, TG_REFLECTOR, 1400).labels
    # a Telegram address on another port is Telegram, not a call; a reflector port elsewhere is nothing
    feed(c, [udp4(CLIENT, 40002, TG_REFLECTOR, 443, b"\x00" * 40)])
    assert flow_of(c, CLIENT, 40002, TG_REFLECTOR, 443).labels == {"telegram"}
    feed(c, [udp4(CLIENT, 40003, "203.0.113.5", 1400, b"\x00" * 40)])
    assert flow_of(c, CLIENT, 40003, "203.0.113.5", 1400).labels == set()


def test_other_apps_stun_is_just_stun() -> None:
    c = Classifier()
    # Google/Zoom-like ICE: Binding with vendor comprehension-optional attributes only
    msg = stun_message(0x0001, [(0x0006, b"abcd:efgh"), (0xC057, b"\x00\x01\x00\x0a"), (0x8028, b"\0" * 4)])
    feed(c, [udp4(CLIENT, 50000, "142.250.82.1", 19302, msg)])
    f = flow_of(c, CLIENT, 50000, "142.250.82.1", 19302)
    assert f.labels == {"stun"}
    feed(c, [udp4(CLIENT, 50000, "203.0.113.7", 8801, rtp(i)) for i in range(4)])
    assert "whatsapp-call" not in flow_of(c, CLIENT, 50000, "203.0.113.7", 8801).labels


def test_tls_sni_ja4_and_split_client_hello() -> None:
    hs = build_client_hello(sni="blocked.example", alpn=[b"h2"], pad=700)
    rec = tls_record(hs)
    segs = [rec[:50], rec[50:]]
    syn = tcp4(CLIENT, 40000, "203.0.113.1", 443, b"", seq=999, flags=0x02)
    pk = [syn, tcp4(CLIENT, 40000, "203.0.113.1", 443, segs[0], seq=1000),
          tcp4(CLIENT, 40000, "203.0.113.1", 443, segs[1], seq=1050)]  # fmt: skip
    c = Classifier()
    feed(c, pk)
    f = c.table.get(parse_ip(pk[0]))
    assert f is not None and f.sni == "blocked.example" and f.alpn == ["h2"]
    assert "tls" in f.labels and f.fingerprints["ja4"].startswith("t13d")
    # like TSPU's throttler: no reassembly, no SNI (but the record header still says TLS)
    c2 = Classifier(reassemble_tls=False)
    feed(c2, pk)
    f2 = c2.table.get(parse_ip(pk[0]))
    assert f2 is not None and f2.sni is None and "tls" in f2.labels


def test_inspection_budget_then_counters_only() -> None:
    c = Classifier(inspect_packets=3)
    raws = [udp4(CLIENT, 7000, "203.0.113.2", 9000, b"\xff" * 30) for _ in range(10)]
    feed(c, raws)
    f = flow_of(c, CLIENT, 7000, "203.0.113.2", 9000)
    assert not f.inspecting and f.inspected == 3 and f.packets == 10 and f.classifier_state is None


def test_observation_reports_new_flow_direction_and_change() -> None:
    c = Classifier()
    o1 = c.observe(parse_ip(udp4(CLIENT, 1, "203.0.113.3", 3478, stun_message(0x0001, []))), 0.0)
    assert o1.new_flow and o1.direction is Direction.ORIGINAL and o1.changed
    o2 = c.observe(parse_ip(udp4("203.0.113.3", 3478, CLIENT, 1, stun_message(0x0101, []))), 0.1)
    assert not o2.new_flow and o2.direction is Direction.REPLY and not o2.changed


def test_wireguard_and_openvpn() -> None:
    c = Classifier()
    init = b"\x01\x00\x00\x00" + struct.pack("<I", 5) + b"\x00" * 140
    resp = b"\x02\x00\x00\x00" + struct.pack("<II", 9, 5) + b"\x00" * 80
    feed(c, [udp4(CLIENT, 51820, "203.0.113.4", 51820, init), udp4("203.0.113.4", 51820, CLIENT, 51820, resp)])
    assert "wireguard" in flow_of(c, CLIENT, 51820, "203.0.113.4", 51820).labels
    sid_c, sid_s = b"C" * 8, b"S" * 8
    cr = bytes([7 << 3]) + sid_c + b"\x00" + b"\x00" * 4
    sr = bytes([8 << 3]) + sid_s + b"\x01" + b"\x00" * 4 + sid_c + b"\x00" * 4
    feed(c, [udp4(CLIENT, 1194, "203.0.113.5", 1194, cr), udp4("203.0.113.5", 1194, CLIENT, 1194, sr)])
    assert "openvpn" in flow_of(c, CLIENT, 1194, "203.0.113.5", 1194).labels


def test_extra_address_list() -> None:
    lists = {"corp": AddressList.from_networks("corp", ["203.0.113.0/24", "2001:db8::/32"])}
    c = Classifier(extra_address_lists=lists)
    feed(c, [udp4(CLIENT, 1, "203.0.113.200", 53, b"x")])
    assert "corp" in flow_of(c, CLIENT, 1, "203.0.113.200", 53).labels
    assert bytes.fromhex("20010db8" + "00" * 12) in lists["corp"]


def test_fragments_are_counted_in_their_flow() -> None:
    from _dpi_helpers import ipv4, udp

    full = udp(5000, 443, b"A" * 100)
    c = Classifier()
    c.observe(parse_ip(ipv4(CLIENT, "203.0.113.6", 17, full[:48], ident=9, frag=0x2000)), 0.0)
    c.observe(parse_ip(ipv4(CLIENT, "203.0.113.6", 17, full[48:], ident=9, frag=6)), 0.0)
    f = flow_of(c, CLIENT, 5000, "203.0.113.6", 443)
    assert f.packets == 2 and f.fragments == 2 and len(c.table) == 1


def test_bad_settings() -> None:
    with pytest.raises(ValueError):
        Classifier(inspect_packets=-1)


def test_quic_initial_sni_and_undecryptable_versions() -> None:
    from _dpi_helpers import build_client_hello
    from test_dissect_quic import DCID, build_initial

    from testbed.core.dissect.quic import QUIC_V1

    ch = build_client_hello(sni="video.example", alpn=[b"h3"], ech=True)
    c = Classifier()
    feed(c, [udp4(CLIENT, 61000, "203.0.113.8", 443, build_initial(QUIC_V1, DCID, [(0, ch)]))])
    f = flow_of(c, CLIENT, 61000, "203.0.113.8", 443)
    assert {"quic", "ech"} <= f.labels and f.sni == "video.example" and f.alpn == ["h3"]
    assert f.fingerprints["ja4"].startswith("q13d") and not f.inspecting
    # a vendor version we hold no salt for: still QUIC by shape (>= 1200-byte long header)
    odd = b"\xc3\xfa\xce\xb0\x0e" + b"\x08" + DCID + b"\x00" * 1200
    feed(c, [udp4(CLIENT, 61001, "203.0.113.8", 443, odd)])
    assert "quic" in flow_of(c, CLIENT, 61001, "203.0.113.8", 443).labels


def test_stun_with_the_apps_own_servers() -> None:
    c = Classifier()
    wa_front = "157.240.20.52"  # in the shipped WhatsApp list
    feed(c, [udp4(CLIENT, 3000, wa_front, 3478, stun_message(0x0001, []))])
    assert "whatsapp-call" in flow_of(c, CLIENT, 3000, wa_front, 3478).labels
    feed(c, [udp4(CLIENT, 3001, "149.154.167.51", 3478, stun_message(0x0001, []))])
    assert "telegram-call" in flow_of(c, CLIENT, 3001, "149.154.167.51", 3478).labels


def test_port_guess_only_for_unrecognised_flows() -> None:
    junk = [tcp4(CLIENT, 41000, "203.0.113.9", 443, b"\x99" * 40, seq=1 + 40 * i) for i in range(3)]
    c = Classifier(retain_ended=True)
    feed(c, junk)
    (f,) = list(c.flows())
    assert f.labels == {"tls", "by-port"}
    c2 = Classifier(port_guess=False)
    feed(c2, junk)
    assert next(c2.flows()).labels == set()
    # a recognised flow gets no guess, and no flow ever gets a call label by port
    c3 = Classifier()
    feed(c3, [udp4(CLIENT, 41001, "203.0.113.9", 3478, b"\x99" * 40)])
    assert next(c3.flows()).labels == {"stun", "by-port"}
    feed(c3, [udp4(CLIENT, 41002, "203.0.113.9", 3478, stun_message(0x0001, []))])
    assert [f.labels for f in c3.flows()][1] == {"stun"}


def test_inspect_packets_zero_means_counting_only() -> None:
    c = Classifier(inspect_packets=0, port_guess=False)
    feed(c, [udp4(CLIENT, 1, "203.0.113.9", 3478, stun_message(0x0001, []))])
    f = next(c.flows())
    assert f.labels == set() and f.packets == 1 and f.inspected == 0


def test_telegram_reflector_payload_anywhere() -> None:
    c = Classifier()
    pkt = bytes(range(16)) + b"\xff" * 12 + b"\x00" * 20  # peer tag, relay marker
    feed(c, [udp4(CLIENT, 42000, "203.0.113.10", 597, pkt)])
    assert "telegram-call" in flow_of(c, CLIENT, 42000, "203.0.113.10", 597).labels
    feed(c, [udp4(CLIENT, 42001, "203.0.113.10", 8801, pkt)])  # not a reflector port
    assert "telegram-call" not in flow_of(c, CLIENT, 42001, "203.0.113.10", 8801).labels


def test_constant_connection_ids_are_not_openvpn() -> None:
    # QUIC short headers (first byte 0x40/0x50 = OpenVPN reset opcodes with key id 0) followed by
    # a constant 8-byte connection id: the shape OpenVPN's session id has, but not its resets.
    import random

    rng = random.Random(7)
    dcid = b"\x11" * 8
    c = Classifier()
    raws = []
    for i in range(12):
        b0 = (0x40, 0x50, 0x48, 0x28)[i % 4]
        raws.append(udp4(CLIENT, 62000, "203.0.113.11", 4433, bytes([b0]) + dcid + rng.randbytes(40)))
        raws.append(udp4("203.0.113.11", 4433, CLIENT, 62000, bytes([0x40]) + b"\x22" * 8 + rng.randbytes(40)))
    feed(c, raws)
    assert "openvpn" not in flow_of(c, CLIENT, 62000, "203.0.113.11", 4433).labels


def test_openvpn_one_direction_tls_crypt() -> None:
    sid = b"\x33" * 8
    reset = bytes([7 << 3]) + sid + b"\x00\x00\x00\x01" + b"\x63\xcf\x4f\xf5" + b"\x99" * 32
    ctrl = bytes([4 << 3]) + sid + b"\x00\x00\x00\x02" + b"\x63\xcf\x4f\xf5" + b"\x98" * 60
    c = Classifier()
    feed(c, [udp4(CLIENT, 60201, "203.0.113.12", 443, reset), udp4(CLIENT, 60201, "203.0.113.12", 443, ctrl)])
    assert "openvpn" in flow_of(c, CLIENT, 60201, "203.0.113.12", 443).labels


def test_hellos_kept_for_policies() -> None:
    from _dpi_helpers import build_client_hello

    rec = tls_record(build_client_hello(sni="x.example"))
    c = Classifier()
    feed(c, [tcp4(CLIENT, 40100, "203.0.113.13", 443, rec)])
    f = next(c.flows())
    assert f.client_hello is not None and f.client_hello.sni == "x.example"
    assert f.client_hello.raw[:1] == b"\x01"
    c2 = Classifier(keep_hellos=False)
    feed(c2, [tcp4(CLIENT, 40100, "203.0.113.13", 443, rec)])
    assert next(c2.flows()).client_hello is None


def test_evidence_reaches_flows_already_running() -> None:
    # the peer's media flow starts (and exhausts its budget) before the relay's STUN names the app
    c = Classifier(inspect_packets=2)
    peer = "198.51.100.77"
    feed(c, [udp4(peer, 5004, CLIENT, 56000, b"\x99" * 50) for _ in range(4)])
    media = flow_of(c, peer, 5004, CLIENT, 56000)
    assert not media.inspecting and "whatsapp-call" not in media.labels
    feed(c, [udp4(CLIENT, 56000, WA_RELAY, 3478, stun_message(0x0003, [(0x4000, b"\x01" * 8)]))], t0=1.0)
    assert {"whatsapp-call", "whatsapp"} <= media.labels
    # a flow on another local port is untouched
    feed(c, [udp4(peer, 5004, CLIENT, 56001, b"\x99" * 50)], t0=2.0)
    assert "whatsapp-call" not in flow_of(c, peer, 5004, CLIENT, 56001).labels


def test_stun_flows_get_extra_inspection_for_their_media() -> None:
    c = Classifier(inspect_packets=3)
    raws = [udp4(CLIENT, 57000, "203.0.113.14", 3478, stun_message(0x0001, [])) for _ in range(3)]
    raws += [udp4(CLIENT, 57000, "203.0.113.14", 3478, rtp(i)) for i in range(2)]
    feed(c, raws)
    assert {"stun", "rtp", "srtp"} <= flow_of(c, CLIENT, 57000, "203.0.113.14", 3478).labels


def test_stun_over_tcp_learns_endpoints_at_the_packets_time() -> None:
    # The censor's clock is monotonic: past 600 s of uptime an entry learnt at "time 0" would
    # already be expired. STUN over TCP must stamp the cache with the packet's own time.
    c = Classifier()
    t = 5000.0
    alloc = stun_message(0x0003, [(0x4000, b"\x05" * 20)])  # WhatsApp attribute range
    c.observe(parse_ip(tcp4(CLIENT, 1000, WA_RELAY, 3478, alloc)), t)
    tcp_flow = c.table.get(parse_ip(tcp4(CLIENT, 1000, WA_RELAY, 3478, b"")))
    assert tcp_flow is not None and "whatsapp-call" in tcp_flow.labels
    feed(c, [udp4(CLIENT, 1000, "203.0.113.9", 4000, rtp(i)) for i in range(3)], t0=t + 1.0)
    assert "whatsapp-call" in flow_of(c, CLIENT, 1000, "203.0.113.9", 4000).labels


def test_whatsapp_stun_types_over_tcp() -> None:
    c = Classifier()
    c.observe(parse_ip(tcp4(CLIENT, 1001, WA_RELAY, 3478, stun_message(0x0800, []))), 1.0)
    flow = c.table.get(parse_ip(tcp4(CLIENT, 1001, WA_RELAY, 3478, b"")))
    assert flow is not None and {"stun", "whatsapp-call"} <= flow.labels


def test_inspection_state_is_typed_per_protocol_lazy_and_dropped_when_done() -> None:
    from testbed.core.classify.state import ClassifierState, StunState, TlsState

    c = Classifier()
    syn = parse_ip(tcp4(CLIENT, 40000, "203.0.113.20", 443, b"", flags=0x02))
    c.observe(syn, 0.0)
    tcp_flow = c.table.get(syn)
    assert tcp_flow is not None and tcp_flow.classifier_state is None  # nothing inspected yet
    c.observe(parse_ip(tcp4(CLIENT, 40000, "203.0.113.20", 443, tls_record(build_client_hello(sni="a.example")))), 0.1)
    st = tcp_flow.classifier_state
    assert isinstance(st, ClassifierState) and isinstance(st.tls, TlsState)
    assert st.tls.client_is_orig and st.tls.client_hello_done and not st.tls.server_hello_done
    # Only what the TLS path used exists: no STUN, OpenVPN, WireGuard, RTP, DTLS or QUIC state.
    assert (st.tcp, st.stun, st.openvpn, st.wireguard, st.rtp, st.dtls, st.quic) == (None,) * 7

    feed(c, [udp4(CLIENT, 40001, "203.0.113.21", 3478, stun_message(0x0001, []))])
    st2 = flow_of(c, CLIENT, 40001, "203.0.113.21", 3478).classifier_state
    assert st2 is not None and isinstance(st2.stun, StunState) and st2.stun.addrs == [] and st2.tls is None

    init = b"\x01\x00\x00\x00" + struct.pack("<I", 5) + b"\x00" * 140
    resp = b"\x02\x00\x00\x00" + struct.pack("<II", 9, 5) + b"\x00" * 80
    feed(c, [udp4(CLIENT, 51820, "203.0.113.4", 51820, init)])
    wg = flow_of(c, CLIENT, 51820, "203.0.113.4", 51820)
    assert wg.inspecting and wg.classifier_state is not None
    feed(c, [udp4("203.0.113.4", 51820, CLIENT, 51820, resp)])
    assert not wg.inspecting and wg.classifier_state is None  # decided: the state is freed
