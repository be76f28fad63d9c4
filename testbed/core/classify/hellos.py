"""Facts every transport's dissectors record the same way: SNI (and the apps it names),
ClientHello/ServerHello fingerprints, the DNS question."""

from __future__ import annotations

from testbed.core.dissect.dns import DnsMessage
from testbed.core.dissect.tls import ClientHello, ServerHello, client_hello_fingerprints, server_hello_fingerprints
from testbed.core.flow import Flow
from testbed.core.labels import Label

__all__ = ["Hellos", "label_dns", "set_sni"]

_WHATSAPP_SNI = ("whatsapp.net", "whatsapp.com", "wa.me")
_TELEGRAM_SNI = ("telegram.org", "t.me", "telegram.me", "telesco.pe", "tdesktop.com", "tg.dev")


def set_sni(flow: Flow, sni: str) -> None:
    flow.sni = sni
    low = sni.lower().rstrip(".")
    if any(low == d or low.endswith("." + d) for d in _WHATSAPP_SNI):
        flow.labels.add(Label.WHATSAPP)
    if any(low == d or low.endswith("." + d) for d in _TELEGRAM_SNI):
        flow.labels.add(Label.TELEGRAM)


def label_dns(flow: Flow, msg: DnsMessage | None) -> bool:
    if msg is None:
        return False
    flow.labels.add(Label.DNS)
    if msg.qname and "dns_qname" not in flow.fingerprints:
        flow.fingerprints["dns_qname"] = msg.qname[:255]
    return True


class Hellos:
    """Records a parsed ClientHello/ServerHello (TLS, DTLS or QUIC) on its flow; ``keep``
    keeps the parsed objects too (a few KiB per flow) for policies that match their structure."""

    __slots__ = ("keep",)

    def __init__(self, keep: bool) -> None:
        self.keep = keep

    def client(self, flow: Flow, ch: ClientHello, transport: str) -> None:
        """``transport``: "t" (TLS over TCP), "d" (DTLS) or "q" (QUIC), as in JA4."""
        if transport == "t":
            flow.labels.add(Label.TLS)
        sni = ch.sni
        if sni and flow.sni is None:
            set_sni(flow, sni)
        if not flow.alpn:
            flow.alpn = list(ch.alpn)
        if "ja3" not in flow.fingerprints:
            flow.fingerprints.update(client_hello_fingerprints(ch, transport))
        if self.keep and flow.client_hello is None:
            flow.client_hello = ch
        if ch.has_ech:
            # Real or GREASE ECH look alike; the Cloudflare block (censor-behaviors.md G.18)
            # keyed on this extension together with the outer SNI cloudflare-ech.com.
            # Both forms are contract: the label and fingerprints["ech"] = "present".
            flow.labels.add(Label.ECH)
            flow.fingerprints["ech"] = "present"

    def server(self, flow: Flow, sh: ServerHello) -> None:
        flow.fingerprints.update(server_hello_fingerprints(sh))
        if self.keep:
            flow.server_hello = sh
