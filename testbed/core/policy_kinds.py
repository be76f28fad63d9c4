"""The policy's wire-level vocabulary: enums shared by the sans-IO engine and the scenario schema.

They live in the core (not in ``testbed.scenario``) so the engine depends on nothing above it;
the schema imports them to validate scenario files, the policy IR (``testbed.core.policy.ir``)
carries them, and the running policy acts on them: one enum per concept, never converted by value.
"""

from __future__ import annotations

import enum


class PacketDirection(str, enum.Enum):
    """A packet's direction: relative to its flow, or to the censor's inside/outside split."""

    ORIGINAL = "original"  # from the flow's initiator (conntrack's ORIGINAL)
    REPLY = "reply"  # towards the initiator
    OUTBOUND = "outbound"  # sent by an inside address
    INBOUND = "inbound"  # sent by an outside address
    BOTH = "both"


class PayloadScope(str, enum.Enum):
    PACKET = "packet"  # offset into the TCP/UDP payload
    CLIENT_HELLO = "client_hello"  # offset into the ClientHello body (TLS, DTLS)
    SERVER_HELLO = "server_hello"  # offset into the ServerHello body (TLS, DTLS)


class RejectWith(str, enum.Enum):
    AUTO = "auto"  # TCP: rst; anything else: icmp
    RST = "rst"  # TCP RST/ACK towards both ends (or `to:`)
    REWRITE = "rewrite"  # the server's reply rewritten into RST/ACK (TSPU SNI-I, A.2)
    ICMP = "icmp"  # ICMP(v6) destination unreachable towards the sender


class RejectTo(str, enum.Enum):
    BOTH = "both"
    CLIENT = "client"  # the flow's initiator
    SERVER = "server"  # the flow's responder


class ThrottleMode(str, enum.Enum):
    POLICE = "police"  # drop what exceeds the bucket (TSPU's Twitter throttler, B.8)
    SHAPE = "shape"  # hold it until the bucket allows, within a bounded backlog


class ThrottlePer(str, enum.Enum):
    DIRECTION = "direction"  # one bucket per flow and direction (B.8)
    FLOW = "flow"  # one bucket per flow, both directions
    AGGREGATE = "aggregate"  # one bucket shared by every flow the rule matches


class Distribution(str, enum.Enum):
    UNIFORM = "uniform"
    NORMAL = "normal"
    PARETO = "pareto"
    PARETONORMAL = "paretonormal"


class Transport(str, enum.Enum):
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"  # ICMP and ICMPv6


class Family(str, enum.Enum):
    """The IP version of a flow (``match: {family: v6}``)."""

    V4 = "v4"
    V6 = "v6"


class HelloKind(str, enum.Enum):
    CLIENT = "client"
    SERVER = "server"
    ANY = "any"


class IcmpCode(str, enum.Enum):
    """Destination-unreachable codes, named for what they mean rather than per family."""

    PORT = "port"  # ICMPv4 3/3 (RFC 792), ICMPv6 1/4 (RFC 4443 §3.1): what a closed UDP port says
    ADMIN = "admin"  # ICMPv4 3/13 (RFC 1812 §5.2.7.1), ICMPv6 1/1: "communication administratively prohibited"
    HOST = "host"  # ICMPv4 3/1, ICMPv6 1/3 (address unreachable)
    NET = "net"  # ICMPv4 3/0, ICMPv6 1/0 (no route)

    @property
    def v4(self) -> int:
        return _ICMP_V4[self]

    @property
    def v6(self) -> int:
        return _ICMP_V6[self]


_ICMP_V4 = {IcmpCode.PORT: 3, IcmpCode.ADMIN: 13, IcmpCode.HOST: 1, IcmpCode.NET: 0}
_ICMP_V6 = {IcmpCode.PORT: 4, IcmpCode.ADMIN: 1, IcmpCode.HOST: 3, IcmpCode.NET: 0}


class LossModel(str, enum.Enum):
    BERNOULLI = "bernoulli"
    GILBERT_ELLIOTT = "gilbert-elliott"


class Then(str, enum.Enum):
    DROP = "drop"
    REJECT = "reject"


class CountFrom(str, enum.Enum):
    FLOW = "flow"  # from the flow's first packet
    MATCH = "match"  # from the first packet the rule matched


class BlockKey(str, enum.Enum):
    """What a residual block (``block_after``) keys on."""

    SERVER = "server"  # the responder's address, any port and protocol, both directions
    TUPLE3 = "3-tuple"  # (transport, responder address, responder port)
    PAIR = "pair"  # (initiator address, responder address)
    # (transport, initiator address, responder address, responder port): the GFW's "3-tuple"
    # (client IP, server IP, server port) of its fully-encrypted and QUIC blocks (I.26, I.27)
    CLIENT_TUPLE3 = "client-3-tuple"


class BlockDirection(str, enum.Enum):
    """Which packets a residual block (``block_after``) stops."""

    BOTH = "both"
    TO_SERVER = "to-server"  # only those sent towards the blocked server (the GFW's FET block, I.26)
