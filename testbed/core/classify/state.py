"""What the classifier remembers about a flow while it inspects it: one typed object per protocol.

``Flow.classifier_state`` is ``None`` until the flow's first inspected packet, then a
``ClassifierState`` whose per-protocol parts are created only when that protocol's dissector
first needs them (a QUIC flow never allocates TLS or OpenVPN state). When inspection ends the
whole object is dropped: the flow's labels, SNI and fingerprints are what is kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from testbed.core.dissect.dtls import DtlsHandshakeAssembler
from testbed.core.dissect.quic import QuicCryptoAssembler
from testbed.core.dissect.rtp import RtpTracker
from testbed.core.dissect.tls import TlsHelloAssembler

__all__ = [
    "ClassifierState",
    "OpenVpnState",
    "StunState",
    "TcpState",
    "TlsState",
    "WireGuardState",
]


@dataclass(slots=True, eq=False)
class TcpState:
    """Which directions have carried a segment past the TLS check (a TCP DNS message or an
    OpenVPN reset is only looked for in the first segment of its direction)."""

    seen_orig: bool = False
    seen_reply: bool = False


@dataclass(slots=True, eq=False)
class TlsState:
    """A TLS handshake over TCP: which side is the client (whoever sent the ClientHello, not
    necessarily the SYN), and whether each hello has been read or given up on."""

    client_is_orig: bool
    client_hello_done: bool = False
    server_hello_done: bool = False
    assembler: TlsHelloAssembler | None = None  # only with reassembly on, from the first segment


@dataclass(slots=True, eq=False)
class OpenVpnState:
    """OpenVPN's handshake match (classify/vpn.py): per direction, the opcode and session id of
    the hard reset that opened it, and whether the direction has carried an OpenVPN-shaped
    packet yet."""

    orig: tuple[int, bytes] | None = None
    reply: tuple[int, bytes] | None = None
    opened_orig: bool = False
    opened_reply: bool = False


@dataclass(slots=True, eq=False)
class StunState:
    """Transport addresses the flow's STUN named (XOR-PEER-/XOR-RELAYED-ADDRESS), at most 8."""

    addrs: list[tuple[bytes, int]] = field(default_factory=list)


@dataclass(slots=True, eq=False)
class WireGuardState:
    """Receiver indexes of cookie replies / transport data seen so far (at most 4): the same
    index twice confirms WireGuard."""

    receivers: set[int] = field(default_factory=set)


@dataclass(slots=True, eq=False)
class ClassifierState:
    """A flow's inspection state; ``done`` ends inspection before the packet budget does."""

    done: bool = False
    tcp: TcpState | None = None
    tls: TlsState | None = None
    openvpn: OpenVpnState | None = None
    stun: StunState | None = None
    wireguard: WireGuardState | None = None
    # The dissectors' own assemblers and trackers are the per-protocol state of DTLS, QUIC, RTP.
    dtls: DtlsHandshakeAssembler | None = None
    quic: QuicCryptoAssembler | None = None
    rtp: RtpTracker | None = None
