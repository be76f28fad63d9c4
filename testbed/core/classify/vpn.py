"""VPN handshakes: OpenVPN (UDP or TCP) and WireGuard (UDP)."""

from __future__ import annotations

from testbed.core.classify.state import ClassifierState, OpenVpnState, WireGuardState
from testbed.core.dissect.vpn import CLIENT_RESETS, SERVER_RESETS, parse_openvpn, parse_wireguard
from testbed.core.flow import Flow
from testbed.core.labels import Label

__all__ = ["RESET_FIRST_BYTES", "openvpn", "wireguard"]

# A flow already recognised as one of these is not re-read as OpenVPN.
_NOT_OPENVPN = frozenset(
    {Label.QUIC, Label.DTLS, Label.STUN, Label.TLS, Label.WIREGUARD, Label.RTP, Label.HTTP, Label.DNS}
)


def wireguard(flow: Flow, payload: bytes, st: ClassifierState) -> None:
    m = parse_wireguard(payload)
    if m is None:
        return
    if m.msg_type == 1:
        flow.labels.add(Label.WIREGUARD)
    elif m.msg_type == 2:
        flow.labels.add(Label.WIREGUARD)
        st.done = True
    elif m.msg_type in (3, 4):
        # A cookie reply or transport data alone is weak (4 bytes + a size rule); wanting
        # the same receiver index twice in a row makes a random match very unlikely.
        wg = st.wireguard
        if wg is None:
            wg = st.wireguard = WireGuardState()
        seen = wg.receivers
        if m.receiver in seen:
            flow.labels.add(Label.WIREGUARD)
            st.done = True
        elif len(seen) < 4:
            seen.add(m.receiver)


def openvpn(flow: Flow, payload: bytes, original: bool, st: ClassifierState, *, tcp: bool) -> bool:
    """OpenVPN by its handshake template (censor-behaviors.md F.15).

    Only a hard reset that opens its direction of the flow (key_id 0) starts a match, and
    it must look like one (``_reset_shaped``), because other protocols also carry a
    constant 8-byte id after one byte (a QUIC short header's connection id, gQUIC's).
    Then any of: (a) a reset from the other side that also opens its direction; (b) a
    P_CONTROL/P_ACK or repeated reset with the same session id in the same direction (one
    direction of a NATed or asymmetric path); (c) a reply echoing the client's session id.
    ``st.openvpn`` exists from the first OpenVPN-shaped packet on: later packets of the flow
    are then tried whatever their first byte.
    """
    p = parse_openvpn(payload, tcp=tcp)
    if p is None or not p.session_id or flow.labels & _NOT_OPENVPN:
        return False
    ov = st.openvpn
    if ov is None:
        ov = st.openvpn = OpenVpnState()
    if original:
        first_in_dir = not ov.opened_orig
        ov.opened_orig = True
        mine, other = ov.orig, ov.reply
    else:
        first_in_dir = not ov.opened_reply
        ov.opened_reply = True
        mine, other = ov.reply, ov.orig
    if p.opcode in CLIENT_RESETS or p.opcode in SERVER_RESETS:
        if p.key_id != 0:
            return False
        if mine is not None and p.session_id == mine[1]:
            return _found(flow, st)  # (b) the reset retransmitted
        if not first_in_dir:
            return False
        echo = other is not None and other[1] in p.body
        if not (echo or _reset_shaped(p.body)):
            return False
        if original:
            ov.orig = (p.opcode, p.session_id)
        else:
            ov.reply = (p.opcode, p.session_id)
        if other is not None and (echo or (p.opcode in SERVER_RESETS) != (other[0] in SERVER_RESETS)):
            return _found(flow, st)  # (a), (c)
        return True
    if mine is not None and p.session_id == mine[1] and p.opcode in (4, 5):
        return _found(flow, st)  # (b)
    if other is not None and other[1] in p.body and p.opcode in (4, 5):
        return _found(flow, st)  # (c) an ACK of the other side's reset
    return False


def _found(flow: Flow, st: ClassifierState) -> bool:
    flow.labels.add(Label.OPENVPN)
    st.done = True
    return True


def _reset_shaped(body: bytes) -> bool:
    """The bytes after a hard reset's session id look like OpenVPN's (ssl_pkt.h): with no
    control-channel wrapping, an ACK array (empty, or acks + the peer's session id) and message
    packet-id 0; with tls-crypt,
    replay packet-id 1 (then a timestamp); with tls-auth, packet-id 1 after a 20- or 32-byte
    HMAC. Random bytes pass with odds around 2^-32."""
    if body[:5] == b"\x00\x00\x00\x00\x00":
        return True
    n = body[0] if body else 0
    if 1 <= n <= 8 and body[1 + 4 * n + 8 : 1 + 4 * n + 12] == b"\x00\x00\x00\x00":
        return True  # a server reset acknowledging the client's: n acks, remote session id, 0
    return any(body[h : h + 4] == b"\x00\x00\x00\x01" for h in (0, 20, 32, 64))


# First bytes of an OpenVPN hard reset over UDP (opcode in the top 5 bits, key id 0-7 below):
# worth trying OpenVPN on, as is any later packet of a flow that already carried one.
RESET_FIRST_BYTES = frozenset(b for b in range(256) if b >> 3 in CLIENT_RESETS or b >> 3 in SERVER_RESETS)
