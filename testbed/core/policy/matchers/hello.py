"""(D)TLS hellos read from the packet itself, for byte and supported_groups rules.

The classifier keeps the parsed hellos in ``Flow.client_hello``/``server_hello`` (reassembled
when it could); when it did not (another classifier configuration, ``keep_hellos=False``, or a
hello it did not look for), matchers that need bytes at an offset of a hello, or the order of
supported_groups in a ServerHello (the 2021 Snowflake rule, censor-behaviors.md H.19), parse the
packet they are given with the dissectors' public functions. Those see whole hellos in one packet
only: no reassembly across TCP segments or DTLS datagrams, like TSPU's Twitter parser (B.7).
A hello body starts at its legacy_version field (after the 4-byte TLS or 12-byte DTLS handshake
header).
"""

from __future__ import annotations

from testbed.core.dissect.dtls import DtlsHandshakeAssembler, parse_records
from testbed.core.dissect.tls import (
    is_grease,
    parse_client_hello,
    parse_server_hello_body,
    parse_tls_handshake_records,
)
from testbed.core.policy.state import Context

__all__ = ["Hello", "hello_body", "hellos"]

Hello = tuple[str, bytes, tuple[int, ...]]  # ("client" | "server", body, supported_groups)


def hellos(ctx: Context) -> list[Hello]:
    """The hellos in this packet's payload (cached per packet)."""
    got = ctx.hello_cache
    if got is None:
        got = ctx.hello_cache = _extract(ctx.packet.proto, ctx.packet.payload, ctx.packet.is_fragment)
    return got


def hello_body(raw: bytes) -> bytes:
    """The body of a hello's ``raw`` bytes: after the 4-byte TLS-style handshake header the
    dissectors put in front (TLS, QUIC, and DTLS since its reassembled messages carry one too);
    bytes without such a header are taken as the body already."""
    if raw[:1] in (b"\x01", b"\x02") and int.from_bytes(raw[1:4], "big") == len(raw) - 4:
        return raw[4:]
    return raw


def _groups(groups: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(g for g in groups if not is_grease(g))


def _extract(proto: int, payload: bytes, fragment: bool) -> list[Hello]:
    if fragment or len(payload) < 6:
        return []
    out: list[Hello] = []
    b0 = payload[0]
    if proto == 6 and b0 == 22:
        r = parse_tls_handshake_records(payload)
        if r is None or not r[1]:
            return out
        hs = r[0]
        ln = int.from_bytes(hs[1:4], "big")
        if hs[0] == 1:
            ch = parse_client_hello(hs)
            if ch is not None:
                out.append(("client", hs[4 : 4 + ln], _groups(ch.supported_groups)))
        elif hs[0] == 2:
            sh = parse_server_hello_body(hs[4 : 4 + ln])
            if sh is not None:
                out.append(("server", hs[4 : 4 + ln], _groups(sh.supported_groups)))
    elif proto == 17 and 20 <= b0 <= 63:
        records = parse_records(payload)
        if records is None:
            return out
        for h in DtlsHandshakeAssembler().feed(records):
            if h.client_hello is not None:
                ch = h.client_hello
                out.append(("client", hello_body(ch.raw), _groups(ch.supported_groups)))
            elif h.server_hello is not None:
                sh = h.server_hello
                out.append(("server", hello_body(sh.raw), _groups(sh.supported_groups)))
    return out
