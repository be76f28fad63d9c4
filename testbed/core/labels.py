"""The label vocabulary and named address lists.

Labels are the JSON contract of ``testbed classify`` and what policies match on: they are only
ever added, never renamed. ``Label`` is a ``StrEnum`` so a label is also a plain ``str``.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources

__all__ = [
    "CALL_APP_LABELS",
    "PROTOCOL_LABELS",
    "AddressList",
    "Label",
    "shipped_address_lists",
]


class Label(enum.StrEnum):
    # transports and protocols
    STUN = "stun"
    TURN = "turn"
    DTLS = "dtls"
    RTP = "rtp"
    RTCP = "rtcp"
    SRTP = "srtp"
    TLS = "tls"
    ECH = "ech"  # a ClientHello with an encrypted_client_hello extension
    QUIC = "quic"
    WIREGUARD = "wireguard"
    OPENVPN = "openvpn"
    HTTP = "http"  # an HTTP/1.x request or status line
    DNS = "dns"  # a DNS message (RFC 1035), over UDP or TCP; mDNS too
    # applications
    WHATSAPP = "whatsapp"
    WHATSAPP_CALL = "whatsapp-call"
    TELEGRAM = "telegram"
    TELEGRAM_CALL = "telegram-call"
    # qualifiers
    BY_PORT = "by-port"  # the protocol label is a guess from a well-known port, not recognised


CALL_APP_LABELS = frozenset({Label.WHATSAPP_CALL, Label.TELEGRAM_CALL})
PROTOCOL_LABELS = frozenset(
    {
        Label.STUN, Label.TURN, Label.DTLS, Label.RTP, Label.RTCP, Label.SRTP, Label.TLS,
        Label.QUIC, Label.WIREGUARD, Label.OPENVPN, Label.HTTP, Label.DNS,
    }
)  # fmt: skip


@dataclass(slots=True)
class AddressList:
    """A named set of IPv4/IPv6 prefixes, matched against packed addresses.

    Stored as {prefix length: set of network integers} per family so a lookup is one mask and
    one set probe per distinct prefix length (a handful), without building ``ipaddress`` objects.
    """

    name: str
    source: str = ""
    _v4: dict[int, set[int]] = field(default_factory=dict)
    _v6: dict[int, set[int]] = field(default_factory=dict)

    @classmethod
    def from_text(cls, name: str, text: str, source: str = "") -> AddressList:
        """Parse one CIDR per line, '#' comments; raises ValueError naming the bad line."""
        al = cls(name, source)
        for lineno, line in enumerate(text.splitlines(), 1):
            entry = line.split("#", 1)[0].strip()
            if not entry:
                continue
            try:
                al.add(entry)
            except ValueError as exc:
                raise ValueError(f"address list {name!r} line {lineno}: {exc}") from exc
        return al

    @classmethod
    def from_networks(cls, name: str, networks: Iterable[str], source: str = "") -> AddressList:
        al = cls(name, source)
        for n in networks:
            al.add(n)
        return al

    def add(self, cidr: str) -> None:
        net = ipaddress.ip_network(cidr, strict=False)
        table = self._v4 if net.version == 4 else self._v6
        table.setdefault(net.prefixlen, set()).add(int(net.network_address))

    def merged(self, other: AddressList) -> AddressList:
        """A new list with the prefixes of both, under this list's name and source; neither
        operand changes (a shipped list is cached and shared)."""
        out = AddressList(self.name, self.source)
        for src in (self, other):
            for plen, nets in src._v4.items():
                out._v4.setdefault(plen, set()).update(nets)
            for plen, nets in src._v6.items():
                out._v6.setdefault(plen, set()).update(nets)
        return out

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, bytes):
            return False
        if len(addr) == 4:
            table, bits = self._v4, 32
        elif len(addr) == 16:
            table, bits = self._v6, 128
        else:
            return False
        value = int.from_bytes(addr, "big")
        for plen, nets in table.items():
            if (value >> (bits - plen)) << (bits - plen) in nets:
                return True
        return False

    def __len__(self) -> int:
        return sum(len(s) for s in self._v4.values()) + sum(len(s) for s in self._v6.values())


_SHIPPED = {"whatsapp": "whatsapp.txt", "telegram": "telegram.txt"}
_cache: dict[str, AddressList] = {}


def shipped_address_lists() -> dict[str, AddressList]:
    """The address lists shipped in ``testbed/data`` (source and date in each file's header)."""
    if not _cache:
        pkg = resources.files("testbed.data")
        for name, filename in _SHIPPED.items():
            text = pkg.joinpath(filename).read_text(encoding="utf-8")
            source = next((ln[1:].strip() for ln in text.splitlines() if ln.startswith("# Source")), "")
            _cache[name] = AddressList.from_text(name, text, source)
    return dict(_cache)
