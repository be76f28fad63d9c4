"""The endpoint's final report: one typed record, written by the endpoint, read by the orchestrator.

Rule 1 (as in ``signalling``): no I/O, no clock, no aiortc.  The endpoint process builds an
:class:`EndpointReport` (``testbed.calls.endpoint``), sends ``report.to_json()`` inside its final
:class:`~testbed.calls.signalling.Stats` message, and the conductor turns it back into the same
record with :meth:`EndpointReport.from_json` (``metrics.parse_report``).

Wire shape (every key optional; a missing or mistyped value means "not known", because a report
from a half-dead endpoint is still worth what it holds)::

    {
      "stats": [ {"type": "outbound-rtp" | "inbound-rtp" | "remote-inbound-rtp"
                          | "remote-outbound-rtp" | "transport", <aiortc's camelCase fields>}, ...],
      "codecs": {"audio": {"mimeType": "audio/opus", "clockRate": 48000}, ...},
      "received_bytes": {"<ssrc>": <RTP payload bytes received>},
      "arrivals": {"<ssrc>": ArrivalTimes},        # first/last/longest gap/per second
      "frames": {"sent": {"audio": n, ...}, "received": {"audio": n, ...},
                 "due": {"audio": n, ...}},           # due: what the source owed by hang-up
      "cpu": {"at_media_s": s | null, "total_s": s},  # this process's CPU time (start-up: at_media_s)
      "data": {"messages_sent": n, "bytes_sent": n, "messages_received": n,
               "bytes_received": n, "delays_ms": [one-way delay of each received message],
               "arrivals": ArrivalTimes | null} | null,
      "candidate_pair": {CandidatePair fields} | null,
      "snapshots": [Snapshot, ...],                 # cumulative counters, one per sample interval
      "gaps": {"audio": [[start, length], ...]},    # received audio silences
      "silences": [[start, length], ...],           # nothing of any kind arrived
      "last_arrival": t | null,
      "freezes": {"video": [[start, length], ...]}  # received video freezes (W3C definition)
    }

Times are CLOCK_MONOTONIC seconds (both endpoints and the orchestrator share that clock).  The
keys are the ones the endpoint sent before this record existed: keys may be added, never renamed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeGuard

from testbed.calls.result import CandidatePair, Kind
from testbed.records.json import JsonObject

MEDIA_KINDS = (Kind.AUDIO, Kind.VIDEO)
# RTP clock rates fixed by the payload formats: RFC 7587 section 4.1 (Opus always 48 kHz),
# RFC 7741 section 4.1 (VP8 always 90 kHz).  Used only if the endpoint did not report its codec.
DEFAULT_CLOCK_RATE: dict[Kind, int] = {Kind.AUDIO: 48000, Kind.VIDEO: 90000}

Interval = tuple[float, float]
"""(start, length) in seconds."""


class StatsType(StrEnum):
    """The aiortc stats entries a report carries (``aiortc.stats``)."""

    OUTBOUND_RTP = "outbound-rtp"
    INBOUND_RTP = "inbound-rtp"
    REMOTE_INBOUND_RTP = "remote-inbound-rtp"
    REMOTE_OUTBOUND_RTP = "remote-outbound-rtp"
    TRANSPORT = "transport"


@dataclass(frozen=True, slots=True)
class ArrivalTimes:
    """When the packets (or messages) of one stream arrived; see ``metrics.Arrivals``."""

    first: float
    last: float
    max_gap_s: float
    origin: float | None = None
    per_s: tuple[int, ...] = ()

    def to_json(self) -> JsonObject:
        return {
            "first": self.first,
            "last": self.last,
            "max_gap_s": self.max_gap_s,
            "origin": self.origin,
            "per_s": list(self.per_s),
        }

    @classmethod
    def from_json(cls, raw: object) -> ArrivalTimes | None:
        """``None`` if nothing arrived (``first`` is null) or the value does not fit."""
        if not isinstance(raw, Mapping):
            return None
        first, last, gap = raw.get("first"), raw.get("last"), raw.get("max_gap_s")
        if not (is_number(first) and is_number(last) and is_number(gap)):
            return None
        origin = raw.get("origin")
        return cls(
            float(first),
            float(last),
            float(gap),
            origin=float(origin) if is_number(origin) else None,
            per_s=tuple(n for n in as_list(raw.get("per_s")) if as_int(n) is not None),
        )


@dataclass(frozen=True, slots=True)
class RtpStats:
    """One aiortc RTP stats entry (``RTC{Inbound,Outbound,RemoteInbound,RemoteOutbound}RtpStream
    Stats``); a field the entry's type does not have is ``None``.  JSON keys are aiortc's."""

    type: StatsType
    kind: Kind
    ssrc: int
    id: str | None = None
    timestamp: float | None = None
    """Wall-clock seconds (aiortc's ``datetime``), for reading only: never compared."""
    transport_id: str | None = None
    packets_sent: int | None = None
    bytes_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    jitter: int | None = None
    """RTP timestamp units (RFC 3550 A.8), as aiortc reports it."""
    round_trip_time: float | None = None
    """Seconds."""
    fraction_lost: float | None = None
    track_id: str | None = None
    remote_timestamp: float | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": self.type.value, "kind": self.kind.value, "ssrc": self.ssrc}
        for name, key in _RTP_KEYS:
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RtpStats | None:
        type_, kind, ssrc = _stats_type(raw.get("type")), _kind(raw.get("kind")), as_int(raw.get("ssrc"))
        if type_ is None or type_ is StatsType.TRANSPORT or kind not in MEDIA_KINDS or ssrc is None:
            return None
        return cls(
            type=type_,
            kind=kind,
            ssrc=ssrc,
            id=_str(raw.get("id")),
            timestamp=_float(raw.get("timestamp")),
            transport_id=_str(raw.get("transportId")),
            packets_sent=as_int(raw.get("packetsSent")),
            bytes_sent=as_int(raw.get("bytesSent")),
            packets_received=as_int(raw.get("packetsReceived")),
            packets_lost=as_int(raw.get("packetsLost")),
            jitter=as_int(raw.get("jitter")),
            round_trip_time=_float(raw.get("roundTripTime")),
            fraction_lost=_float(raw.get("fractionLost")),
            track_id=_str(raw.get("trackId")),
            remote_timestamp=_float(raw.get("remoteTimestamp")),
        )


_RTP_KEYS = (
    ("id", "id"),
    ("timestamp", "timestamp"),
    ("transport_id", "transportId"),
    ("packets_sent", "packetsSent"),
    ("bytes_sent", "bytesSent"),
    ("packets_received", "packetsReceived"),
    ("packets_lost", "packetsLost"),
    ("jitter", "jitter"),
    ("round_trip_time", "roundTripTime"),
    ("fraction_lost", "fractionLost"),
    ("track_id", "trackId"),
    ("remote_timestamp", "remoteTimestamp"),
)


@dataclass(frozen=True, slots=True)
class TransportStats:
    """aiortc's ``RTCTransportStats`` (with BUNDLE, one transport carries everything)."""

    id: str | None = None
    timestamp: float | None = None
    packets_sent: int | None = None
    packets_received: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    ice_role: str | None = None
    dtls_state: str | None = None

    def to_json(self) -> JsonObject:
        out: JsonObject = {"type": StatsType.TRANSPORT.value}
        for name, key in _TRANSPORT_KEYS:
            value = getattr(self, name)
            if value is not None:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> TransportStats:
        return cls(
            id=_str(raw.get("id")),
            timestamp=_float(raw.get("timestamp")),
            packets_sent=as_int(raw.get("packetsSent")),
            packets_received=as_int(raw.get("packetsReceived")),
            bytes_sent=as_int(raw.get("bytesSent")),
            bytes_received=as_int(raw.get("bytesReceived")),
            ice_role=_str(raw.get("iceRole")),
            dtls_state=_str(raw.get("dtlsState")),
        )


_TRANSPORT_KEYS = (
    ("id", "id"),
    ("timestamp", "timestamp"),
    ("packets_sent", "packetsSent"),
    ("packets_received", "packetsReceived"),
    ("bytes_sent", "bytesSent"),
    ("bytes_received", "bytesReceived"),
    ("ice_role", "iceRole"),
    ("dtls_state", "dtlsState"),
)


def busiest_transport(entries: Sequence[TransportStats]) -> TransportStats | None:
    """With BUNDLE every sender and receiver reports the same transport; keep the busiest copy
    (the last of equals, as the report has always done)."""
    best: TransportStats | None = None
    for entry in entries:
        if best is None or (entry.packets_sent or 0) >= (best.packets_sent or 0):
            best = entry
    return best


@dataclass(frozen=True, slots=True)
class Codec:
    mime_type: str
    clock_rate: int

    def to_json(self) -> JsonObject:
        return {"mimeType": self.mime_type, "clockRate": self.clock_rate}


@dataclass(frozen=True, slots=True)
class DataCounts:
    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    delays_ms: tuple[float, ...] = ()
    arrivals: ArrivalTimes | None = None

    def to_json(self) -> JsonObject:
        return {
            "messages_sent": self.messages_sent,
            "bytes_sent": self.bytes_sent,
            "messages_received": self.messages_received,
            "bytes_received": self.bytes_received,
            "delays_ms": list(self.delays_ms),
            "arrivals": self.arrivals.to_json() if self.arrivals is not None else None,
        }

    @classmethod
    def from_json(cls, raw: object) -> DataCounts | None:
        if not isinstance(raw, Mapping):
            return None
        return cls(
            messages_sent=as_int(raw.get("messages_sent")) or 0,
            bytes_sent=as_int(raw.get("bytes_sent")) or 0,
            messages_received=as_int(raw.get("messages_received")) or 0,
            bytes_received=as_int(raw.get("bytes_received")) or 0,
            delays_ms=tuple(float(d) for d in as_list(raw.get("delays_ms")) if is_number(d)),
            arrivals=ArrivalTimes.from_json(raw.get("arrivals")),
        )


# -- snapshots ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Counters:
    """Cumulative counters of one kind in one direction at one moment; ``None``: not counted
    (``quality.build_samples`` tells "not counted" from zero)."""

    packets: int | None = None
    bytes: int | None = None
    lost: int | None = None
    reported_received: int | None = None
    """Send side: packets the peer's RTCP receiver report says arrived."""
    jitter: float | None = None
    """RTP timestamp units."""
    frames: int | None = None
    messages: int | None = None

    def to_json(self) -> JsonObject:
        return {name: value for name in _COUNTER_NAMES if (value := getattr(self, name)) is not None}

    @classmethod
    def from_json(cls, raw: object) -> Counters | None:
        if not isinstance(raw, Mapping):
            return None
        jitter = raw.get("jitter")
        return cls(
            packets=as_int(raw.get("packets")),
            bytes=as_int(raw.get("bytes")),
            lost=as_int(raw.get("lost")),
            reported_received=as_int(raw.get("reported_received")),
            jitter=jitter if is_number(jitter) else None,
            frames=as_int(raw.get("frames")),
            messages=as_int(raw.get("messages")),
        )


_COUNTER_NAMES = ("packets", "bytes", "lost", "reported_received", "jitter", "frames", "messages")


@dataclass(frozen=True, slots=True)
class KindSnapshot:
    out: Counters | None = None
    in_: Counters | None = None
    rtt: float | None = None
    """Seconds, from the peer's last RTCP receiver report."""
    available_kbps: float | None = None
    """The sender's congestion-control estimate of the path (libwebrtc's
    availableOutgoingBitrate); ``None`` for engines without congestion control (aiortc)."""

    def to_json(self) -> JsonObject:
        out: JsonObject = {}
        if self.out is not None:
            out["out"] = self.out.to_json()
        if self.in_ is not None:
            out["in"] = self.in_.to_json()
        if self.rtt is not None:
            out["rtt"] = self.rtt
        if self.available_kbps is not None:
            out["available_kbps"] = self.available_kbps
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> KindSnapshot:
        return cls(
            out=Counters.from_json(raw.get("out")),
            in_=Counters.from_json(raw.get("in")),
            rtt=_float(raw.get("rtt")),
            available_kbps=_float(raw.get("available_kbps")),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Cumulative counters at ``t`` by kind (``Endpoint.snapshot``); ``quality.build_samples``
    turns a series of them into per-second samples."""

    t: float
    kinds: Mapping[Kind, KindSnapshot] = field(default_factory=dict)

    def to_json(self) -> JsonObject:
        out: JsonObject = {"t": self.t}
        for kind in Kind:  # a fixed order: the JSON does not depend on insertion order
            if kind in self.kinds:
                out[kind.value] = self.kinds[kind].to_json()
        return out

    @classmethod
    def from_json(cls, raw: object) -> Snapshot | None:
        if not isinstance(raw, Mapping) or not is_number(raw.get("t")):
            return None
        kinds = {
            kind: KindSnapshot.from_json(value)
            for name, value in raw.items()
            if (kind := _kind(name)) is not None and isinstance(value, Mapping)
        }
        return cls(t=float(raw["t"]), kinds=kinds)


# -- the report ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointReport:
    rtp: tuple[RtpStats, ...] = ()
    transport: TransportStats | None = None
    codecs: Mapping[Kind, Codec] = field(default_factory=dict)
    """The negotiated codec per media kind (the answer's first)."""
    received_bytes: Mapping[int, int] = field(default_factory=dict)
    """RTP payload bytes received, by SSRC (aiortc's inbound stats have no byte count)."""
    arrivals: Mapping[int, ArrivalTimes] = field(default_factory=dict)
    frames_sent: Mapping[Kind, int] = field(default_factory=dict)
    frames_received: Mapping[Kind, int] = field(default_factory=dict)
    frames_due: Mapping[Kind, int] = field(default_factory=dict)
    """Frames the source's clock made due by hang-up: ``due - sent`` were never sent (the endpoint
    fell behind, e.g. starved of CPU)."""
    cpu_at_media_s: float | None = None
    """The endpoint process's CPU time (user + sys, since it started: interpreter, imports, ICE,
    DTLS) when its first media frame went out: what starting the call cost it."""
    cpu_total_s: float | None = None
    """Its CPU time when it wrote this report."""
    data: DataCounts | None = None
    """``None``: the call had no data channel."""
    candidate_pair: CandidatePair | None = None
    snapshots: tuple[Snapshot, ...] = ()
    """One-per-interval cumulative counters (``Endpoint.snapshot``), for the timeline."""
    gaps: Mapping[Kind, tuple[Interval, ...]] = field(default_factory=dict)
    """Received silences by kind: (start, length), CLOCK_MONOTONIC seconds."""
    freezes: Mapping[Kind, tuple[Interval, ...]] = field(default_factory=dict)
    """Received video freezes by kind (W3C): (start, length)."""
    silences: tuple[Interval, ...] | None = None
    """Intervals of > 1 s in which nothing at all arrived: (start, length)."""
    last_arrival: float | None = None

    def to_json(self) -> JsonObject:
        stats = [entry.to_json() for entry in self.rtp]
        if self.transport is not None:
            stats.append(self.transport.to_json())
        return {
            "stats": stats,
            "codecs": {kind.value: codec.to_json() for kind, codec in self.codecs.items()},
            "received_bytes": {str(ssrc): n for ssrc, n in self.received_bytes.items()},
            "arrivals": {str(ssrc): a.to_json() for ssrc, a in self.arrivals.items()},
            "frames": {
                "sent": {kind.value: n for kind, n in self.frames_sent.items()},
                "received": {kind.value: n for kind, n in self.frames_received.items()},
                "due": {kind.value: n for kind, n in self.frames_due.items()},
            },
            "cpu": {"at_media_s": self.cpu_at_media_s, "total_s": self.cpu_total_s},
            "data": self.data.to_json() if self.data is not None else None,
            "candidate_pair": self.candidate_pair.to_json() if self.candidate_pair else None,
            "snapshots": [s.to_json() for s in self.snapshots],
            "gaps": _intervals_json(self.gaps),
            "silences": [list(i) for i in self.silences] if self.silences is not None else None,
            "last_arrival": self.last_arrival,
            "freezes": _intervals_json(self.freezes),
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> EndpointReport:
        """The record back from the wire.  Entries that do not fit the shape are skipped."""
        rtp: list[RtpStats] = []
        transports: list[TransportStats] = []
        for item in as_list(raw.get("stats")):
            if not isinstance(item, Mapping):
                continue
            if item.get("type") == StatsType.TRANSPORT:
                transports.append(TransportStats.from_json(item))
            elif (entry := RtpStats.from_json(item)) is not None:
                rtp.append(entry)
        codecs: dict[Kind, Codec] = {}
        for name, codec in as_dict(raw.get("codecs")).items():
            kind = _kind(name)
            if kind is not None and isinstance(codec, Mapping):
                mime, rate = codec.get("mimeType"), as_int(codec.get("clockRate"))
                if isinstance(mime, str) and rate:
                    codecs[kind] = Codec(mime, rate)
        received_bytes = {
            int(k): v
            for k, v in as_dict(raw.get("received_bytes")).items()
            if isinstance(k, str) and k.isdigit() and as_int(v) is not None
        }
        arrivals: dict[int, ArrivalTimes] = {}
        for key, value in as_dict(raw.get("arrivals")).items():
            times = ArrivalTimes.from_json(value)
            if isinstance(key, str) and key.isdigit() and times is not None:
                arrivals[int(key)] = times
        frames = as_dict(raw.get("frames"))
        silences = raw.get("silences")
        return cls(
            rtp=tuple(rtp),
            transport=busiest_transport(transports),
            codecs=codecs,
            received_bytes=received_bytes,
            arrivals=arrivals,
            frames_sent=_kind_counts(frames.get("sent")),
            frames_received=_kind_counts(frames.get("received")),
            frames_due=_kind_counts(frames.get("due")),
            cpu_at_media_s=_float(as_dict(raw.get("cpu")).get("at_media_s")),
            cpu_total_s=_float(as_dict(raw.get("cpu")).get("total_s")),
            data=DataCounts.from_json(raw.get("data")),
            candidate_pair=candidate_pair_from_json(raw.get("candidate_pair")),
            snapshots=tuple(s for s in (Snapshot.from_json(x) for x in as_list(raw.get("snapshots"))) if s is not None),
            gaps=_intervals_by_kind(raw.get("gaps")),
            freezes=_intervals_by_kind(raw.get("freezes")),
            silences=_intervals(silences) if isinstance(silences, list) else None,
            last_arrival=_float(raw.get("last_arrival")),
        )

    def find(self, type_: StatsType, kind: Kind, ssrc: int | None = None) -> RtpStats | None:
        for entry in self.rtp:
            if entry.type is type_ and entry.kind is kind and (ssrc is None or entry.ssrc == ssrc):
                return entry
        return None

    def clock_rate(self, kind: Kind) -> int:
        codec = self.codecs.get(kind)
        return codec.clock_rate if codec else DEFAULT_CLOCK_RATE[kind]


def candidate_pair_from_json(raw: object) -> CandidatePair | None:
    if not isinstance(raw, Mapping):
        return None
    try:
        return CandidatePair(
            protocol=str(raw["protocol"]),
            local_address=str(raw["local_address"]),
            local_port=int(raw["local_port"]),
            local_type=str(raw["local_type"]),
            remote_address=str(raw["remote_address"]),
            remote_port=int(raw["remote_port"]),
            remote_type=str(raw["remote_type"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _intervals_json(by_kind: Mapping[Kind, tuple[Interval, ...]]) -> dict[str, list[list[float]]]:
    return {kind.value: [list(i) for i in items] for kind, items in by_kind.items()}


def _intervals(raw: object) -> tuple[Interval, ...]:
    pairs: list[Interval] = []
    for item in as_list(raw):
        if isinstance(item, list | tuple) and len(item) == 2 and all(is_number(v) for v in item):
            pairs.append((float(item[0]), float(item[1])))
    return tuple(pairs)


def _intervals_by_kind(raw: object) -> dict[Kind, tuple[Interval, ...]]:
    return {kind: _intervals(items) for name, items in as_dict(raw).items() if (kind := _kind(name)) is not None}


def _kind_counts(value: object) -> dict[Kind, int]:
    out: dict[Kind, int] = {}
    for name, count in as_dict(value).items():
        kind, n = _kind(name), as_int(count)
        if kind is not None and n is not None:
            out[kind] = n
    return out


# -- lenient readers (shared with metrics) -----------------------------------------------------


def is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def as_list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def as_dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _float(value: object) -> float | None:
    return float(value) if is_number(value) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _kind(name: object) -> Kind | None:
    return Kind(name) if isinstance(name, str) and name in _KIND_VALUES else None


def _stats_type(name: object) -> StatsType | None:
    return StatsType(name) if isinstance(name, str) and name in _STATS_TYPE_VALUES else None


_KIND_VALUES = frozenset(k.value for k in Kind)
_STATS_TYPE_VALUES = frozenset(t.value for t in StatsType)
