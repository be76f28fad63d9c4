"""Signalling messages between the endpoints and the relay, and their wire framing (sans-IO).

Rule 1: this module does no I/O and reads no clock.  Bytes go in through :meth:`Decoder.feed`,
messages come out; :func:`encode` turns a message back into bytes.  Garbage in gives either
messages or :class:`SignallingProtocolError`, never any other exception.

Wire format: newline-delimited JSON (one UTF-8 JSON object per line, ``"type"`` names the message).
The relay runs in the orchestrator and listens on a unix socket in the run's private directory: the
socket lives in the filesystem, so endpoints in other network namespaces reach it, and the censor,
which only sees network traffic, never does -- as a messaging app's signalling travels out of band.

Who sends what::

    endpoint -> relay   Hello(role)             first message on a connection
                        StateChange(t, layer, state)   timeline entries (t: CLOCK_MONOTONIC seconds)
                        Stats(t, report)        final statistics, once, after media stopped
                        Failure(message)        the endpoint hit an error it cannot go on from
                        Done()                  peer connection closed; the process exits next
    relay -> caller     Dial()                  place the call now (both endpoints are ready)
    relay -> endpoint   HangUp(reason)          stop media, say Bye, report Stats, close
                        Restart(reason)         drop the peer connection and start a new one
                                                (a new ICE session); the caller then re-offers
    peer <-> peer       Offer(sdp), Answer(sdp), Bye(reason)   forwarded verbatim by the relay
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from testbed.records.json import JsonObject

# Re-exported: a timeline entry's enums are records (testbed.records.timeline).
from testbed.records.timeline import Layer as Layer
from testbed.records.timeline import Role as Role

MAX_LINE_BYTES = 4 * 1024 * 1024
"""An SDP is a few KB; a final Stats message with per-message data-channel delays stays well under
1 MB for an hour-long call.  Anything longer is a bug, not a message."""


class SignallingProtocolError(ValueError):
    """Bytes that are not a signalling message.  An expected outcome of parsing, handled by the
    relay (it turns it into a ``CallError``: only testbed's own endpoints talk to it)."""


class MessageType(StrEnum):
    HELLO = "hello"
    DIAL = "dial"
    OFFER = "offer"
    ANSWER = "answer"
    BYE = "bye"
    HANGUP = "hangup"
    RESTART = "restart"
    STATE = "state"
    STATS = "stats"
    FAILURE = "failure"
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Hello:
    role: Role
    pid: int
    type: ClassVar[MessageType] = MessageType.HELLO


@dataclass(frozen=True, slots=True)
class Dial:
    type: ClassVar[MessageType] = MessageType.DIAL


@dataclass(frozen=True, slots=True)
class Offer:
    sdp: str
    type: ClassVar[MessageType] = MessageType.OFFER


@dataclass(frozen=True, slots=True)
class Answer:
    sdp: str
    type: ClassVar[MessageType] = MessageType.ANSWER


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str = "hangup"
    type: ClassVar[MessageType] = MessageType.BYE


@dataclass(frozen=True, slots=True)
class HangUp:
    reason: str = "duration reached"
    type: ClassVar[MessageType] = MessageType.HANGUP


@dataclass(frozen=True, slots=True)
class Restart:
    reason: str = "media stalled"
    type: ClassVar[MessageType] = MessageType.RESTART


@dataclass(frozen=True, slots=True)
class StateChange:
    t: float
    layer: Layer
    state: str
    type: ClassVar[MessageType] = MessageType.STATE


@dataclass(frozen=True, slots=True)
class Stats:
    t: float
    report: JsonObject = field(default_factory=dict)
    type: ClassVar[MessageType] = MessageType.STATS


@dataclass(frozen=True, slots=True)
class Failure:
    message: str
    type: ClassVar[MessageType] = MessageType.FAILURE


@dataclass(frozen=True, slots=True)
class Done:
    type: ClassVar[MessageType] = MessageType.DONE


Message = Hello | Dial | Offer | Answer | Bye | HangUp | Restart | StateChange | Stats | Failure | Done

PEER_MESSAGES: tuple[type[Message], ...] = (Offer, Answer, Bye)
"""Messages an endpoint addresses to its peer; the relay forwards them unchanged."""


def to_json(message: Message) -> JsonObject:
    out: JsonObject = {"type": message.type.value}
    match message:
        case Hello(role=role, pid=pid):
            out.update(role=role.value, pid=pid)
        case Offer(sdp=sdp) | Answer(sdp=sdp):
            out["sdp"] = sdp
        case Bye(reason=reason) | HangUp(reason=reason) | Restart(reason=reason):
            out["reason"] = reason
        case StateChange(t=t, layer=layer, state=state):
            out.update(t=t, layer=layer.value, state=state)
        case Stats(t=t, report=report):
            out.update(t=t, report=report)
        case Failure(message=text):
            out["message"] = text
        case Dial() | Done():
            pass
    return out


def encode(message: Message) -> bytes:
    """One message as one line of JSON.  ``json.dumps`` escapes newlines inside strings, so a
    message never contains a raw newline before its end."""
    return json.dumps(to_json(message), separators=(",", ":"), allow_nan=False).encode() + b"\n"


def from_json(obj: object) -> Message:
    """Validate a decoded JSON value as a message.  Unknown keys are ignored (newer peers may add
    them); missing or mistyped ones are a :class:`SignallingProtocolError`."""
    if not isinstance(obj, dict):
        raise SignallingProtocolError(f"a message must be a JSON object, got {type(obj).__name__}")
    kind = obj.get("type")
    try:
        mtype = MessageType(kind if isinstance(kind, str) else repr(kind))
    except ValueError:
        raise SignallingProtocolError(f"unknown message type {kind!r}") from None
    match mtype:
        case MessageType.HELLO:
            role_name = _get(obj, "role", str)
            try:
                role = Role(role_name)
            except ValueError:
                raise SignallingProtocolError(f"hello: unknown role {role_name!r}") from None
            return Hello(role=role, pid=_get(obj, "pid", int))
        case MessageType.DIAL:
            return Dial()
        case MessageType.OFFER:
            return Offer(sdp=_get(obj, "sdp", str))
        case MessageType.ANSWER:
            return Answer(sdp=_get(obj, "sdp", str))
        case MessageType.BYE:
            return Bye(reason=_get(obj, "reason", str))
        case MessageType.HANGUP:
            return HangUp(reason=_get(obj, "reason", str))
        case MessageType.RESTART:
            return Restart(reason=_get(obj, "reason", str))
        case MessageType.STATE:
            layer_name = _get(obj, "layer", str)
            try:
                layer = Layer(layer_name)
            except ValueError:
                raise SignallingProtocolError(f"state: unknown layer {layer_name!r}") from None
            return StateChange(t=_get_number(obj, "t"), layer=layer, state=_get(obj, "state", str))
        case MessageType.STATS:
            return Stats(t=_get_number(obj, "t"), report=_get(obj, "report", dict))
        case MessageType.FAILURE:
            return Failure(message=_get(obj, "message", str))
        case MessageType.DONE:
            return Done()


def _get(obj: JsonObject, key: str, kind: type) -> Any:
    value = obj.get(key)
    # bool is an int in Python, never in this protocol.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SignallingProtocolError(f"{obj.get('type')}: {key!r} must be {kind.__name__}")
    return value


def _get_number(obj: JsonObject, key: str) -> float:
    value = obj.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise SignallingProtocolError(f"{obj.get('type')}: {key!r} must be a finite number")
    return float(value)


def decode_line(line: bytes) -> Message:
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise SignallingProtocolError(f"not a JSON line: {exc}") from None
    return from_json(obj)


class Decoder:
    """Splits a byte stream into messages.  Feed it whatever ``read()`` returned."""

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_line_bytes

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        while (end := self._buffer.find(b"\n")) >= 0:
            if end > self._max:
                raise SignallingProtocolError(f"line longer than {self._max} bytes")
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.strip():
                messages.append(decode_line(line))
        if len(self._buffer) > self._max:
            raise SignallingProtocolError(f"line longer than {self._max} bytes")
        return messages

    def eof(self) -> None:
        """The stream ended: a partial line left over is a truncated message."""
        if self._buffer.strip():
            raise SignallingProtocolError(
                f"stream ended inside a message ({len(self._buffer)} bytes without a newline)"
            )
