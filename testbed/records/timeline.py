"""A call's timeline entry: who reached which state of which layer, when.

The relay (``calls.conductor``) records one :class:`TimelineEntry` per state change; verdicts,
metrics and the reports read the fields, never the text.  On the wire (the result's
``state_timeline``) an entry is still ``[t_s, "<who>:<layer>:<state>"]``, the shape results have
always had; :meth:`TimelineEntry.to_json` writes it and :meth:`TimelineEntry.from_json` reads it.

``state`` stays a string: most states are aiortc's own (``RTCPeerConnectionState`` ...), and a
newer aiortc may add one; the states testbed itself decides on are constants below.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from testbed.records.json import JsonValue, RecordError

__all__ = ["CallState", "Layer", "Party", "Role", "TimelineEntry"]


class Role(StrEnum):
    """An endpoint of a call (the signalling ``hello``'s role)."""

    CALLER = "caller"
    CALLEE = "callee"

    @property
    def peer(self) -> Role:
        return Role.CALLEE if self is Role.CALLER else Role.CALLER

    @property
    def party(self) -> Party:
        return Party.CALLER if self is Role.CALLER else Party.CALLEE


class Party(StrEnum):
    """Who a timeline entry is about: an endpoint, or the relay (the call as a whole)."""

    CALLER = "caller"
    CALLEE = "callee"
    RELAY = "relay"


class Layer(StrEnum):
    """The second part of a timeline entry ``"<who>:<layer>:<state>"``."""

    ENDPOINT = "endpoint"  # ready, lost, exited
    SIGNALLING = "signalling"  # dial, offer-sent, offer-received, answer-..., bye-..., hangup
    ICE_GATHERING = "ice-gathering"  # RTCIceGatheringState
    ICE_CONNECTION = "ice-connection"  # RTCIceConnectionState
    CONNECTION = "connection"  # RTCPeerConnectionState
    DTLS = "dtls"  # RTCDtlsTransportState
    DATA_CHANNEL = "data-channel"  # open, closed
    MEDIA = "media"  # first-audio-received, first-video-received, stalled, resumed, stopped
    CALL = "call"  # relay only: connected, restart, reconnected, timeout, failed, ended


class CallState(StrEnum):
    """The relay's own states (``relay:call:*``, ``relay:signalling:*``, ``*:endpoint:*``)."""

    CONNECTED = "connected"
    RESTART = "restart"
    RECONNECTED = "reconnected"
    TIMEOUT = "timeout"
    FAILED = "failed"
    ENDED = "ended"
    DIAL = "dial"
    HANGUP = "hangup"
    READY = "ready"
    LOST = "lost"


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    t: float
    """Seconds since the call started (``run_call``)."""
    who: Party
    layer: Layer
    state: str

    @property
    def label(self) -> str:
        """``"<who>:<layer>:<state>"``, as the result file spells it."""
        return f"{self.who}:{self.layer}:{self.state}"

    def is_(self, who: Party | None, layer: Layer, state: str) -> bool:
        """This layer reached this state (``who=None``: whoever it was)."""
        return self.layer is layer and self.state == state and (who is None or self.who is who)

    def to_json(self) -> list[JsonValue]:
        return [self.t, self.label]

    @classmethod
    def from_json(cls, raw: object) -> TimelineEntry:
        if not isinstance(raw, list | tuple) or len(raw) != 2:
            raise RecordError(f"timeline entry: expected [t, label], got {raw!r}")
        t, label = raw
        if isinstance(t, bool) or not isinstance(t, int | float):
            raise RecordError(f"timeline entry: t must be a number, got {t!r}")
        return cls.parse(float(t), label)

    @classmethod
    def parse(cls, t: float, label: object) -> TimelineEntry:
        """An entry from its label text (``state`` may itself contain ``:``)."""
        if not isinstance(label, str):
            raise RecordError(f"timeline entry: label must be a string, got {label!r}")
        who, _, rest = label.partition(":")
        layer, sep, state = rest.partition(":")
        try:
            if not sep or not state:
                raise ValueError(label)
            return cls(t, Party(who), Layer(layer), state)
        except ValueError:
            raise RecordError(f"timeline entry: {label!r} is not <caller|callee|relay>:<layer>:<state>") from None
