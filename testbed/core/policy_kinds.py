"""The policy's wire-level vocabulary: enums shared by the sans-IO engine and the scenario schema.

They live in the core (not in ``testbed.scenario``) so the engine depends on nothing above it;
the schema imports them to validate scenario files.
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
