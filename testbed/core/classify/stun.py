"""STUN/TURN messages, over UDP or TCP: labels, fingerprints and call-app evidence."""

from __future__ import annotations

from testbed.core.classify.attribution import CALL_APP_OF, CallAttribution
from testbed.core.classify.state import ClassifierState, StunState
from testbed.core.dissect.stun import WHATSAPP_ATTRS, WHATSAPP_MESSAGE_TYPES, StunAttr, StunMessage
from testbed.core.flow import Flow
from testbed.core.labels import CALL_APP_LABELS, Label

__all__ = ["StunInspector"]

_COOKIE = b"\x21\x12\xa4\x42"


class StunInspector:
    __slots__ = ("calls",)

    def __init__(self, calls: CallAttribution) -> None:
        self.calls = calls

    def message(self, flow: Flow, msg: StunMessage, st: ClassifierState, now: float) -> None:
        flow.labels.add(Label.STUN)
        if msg.is_turn:
            flow.labels.add(Label.TURN)
        fp = flow.fingerprints
        if "stun_software" not in fp:
            sw = msg.attr(StunAttr.SOFTWARE)
            if sw is not None:
                fp["stun_software"] = sw[:64].decode("utf-8", "replace")
        if "stun_realm" not in fp:
            realm_v = msg.attr(StunAttr.REALM)
            if realm_v is not None:
                fp["stun_realm"] = realm_v[:64].decode("utf-8", "replace")
        app: Label | None = None
        if msg.msg_type in WHATSAPP_MESSAGE_TYPES or any(t in WHATSAPP_ATTRS for t, _ in msg.attributes):
            app = Label.WHATSAPP_CALL
        else:
            realm = msg.attr(StunAttr.REALM)
            if realm is not None and b"telegram" in realm.lower():
                app = Label.TELEGRAM_CALL
            elif not flow.labels & CALL_APP_LABELS:
                app = self.calls.app_by_address(flow)
        # Addresses the exchange names (TURN peer and relayed addresses): a media flow to or
        # from them is part of the same call (nDPI's STUN cache learns them too).
        stun = st.stun
        if stun is None:
            stun = st.stun = StunState()
        addrs = stun.addrs
        if len(addrs) < 8:
            for attr in (StunAttr.XOR_PEER_ADDRESS, StunAttr.XOR_RELAYED_ADDRESS):
                a = xor_address(msg, attr)
                if a is not None and a not in addrs:
                    addrs.append(a)
        if app is not None:
            flow.labels.add(app)
            flow.labels.add(CALL_APP_OF[app])
        if flow.labels & CALL_APP_LABELS:
            self.calls.learn(flow, addrs, now)


def xor_address(msg: StunMessage, attr: int) -> tuple[bytes, int] | None:
    """An XOR-*-ADDRESS attribute's transport address (RFC 8489 §14.2)."""
    v = msg.attr(attr)
    if v is None or len(v) < 8 or not msg.cookie:
        return None
    port = int.from_bytes(v[2:4], "big") ^ 0x2112
    if v[1] == 1:
        return bytes(a ^ b for a, b in zip(v[4:8], _COOKIE, strict=True)), port
    if v[1] == 2 and len(v) >= 20:
        mask = _COOKIE + msg.transaction_id
        return bytes(a ^ b for a, b in zip(v[4:20], mask, strict=True)), port
    return None
