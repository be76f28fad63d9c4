"""Raw endpoint statistics -> stream and transport results (sans-IO, pure functions).

An endpoint's final :class:`~testbed.calls.signalling.Stats` message carries a *report*: a JSON
object built by :func:`testbed.calls.endpoint` from aiortc's ``getStats()`` plus what only the
endpoint itself can count.  Its shape (every key optional; a missing key means "not known")::

    {
      "stats": [ {"type": "outbound-rtp" | "inbound-rtp" | "remote-inbound-rtp"
                          | "remote-outbound-rtp" | "transport", <aiortc's camelCase fields>}, ...],
      "codecs": {"audio": {"mimeType": "audio/opus", "clockRate": 48000}, ...},
      "received_bytes": {"<ssrc>": <RTP payload bytes received>},
      "arrivals": {"<ssrc>": Arrivals.to_json()},    # first/last/longest gap/per second
      "frames": {"sent": {"audio": n, ...}, "received": {"audio": n, ...}},
      "data": {"messages_sent": n, "bytes_sent": n, "messages_received": n,
               "bytes_received": n, "delays_ms": [one-way delay of each received message],
               "arrivals": Arrivals.to_json()},
      "candidate_pair": {CandidatePair fields} | null
    }

Nothing here imports aiortc: the orchestrator stays light and this is unit-tested on crafted data.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from testbed.calls.result import (
    CallResult,
    CandidatePair,
    Direction,
    Kind,
    StreamResult,
    TransportResult,
)
from testbed.calls.signalling import Role

# RTP clock rates fixed by the payload formats: RFC 7587 section 4.1 (Opus always 48 kHz),
# RFC 7741 section 4.1 (VP8 always 90 kHz).  Used only if the endpoint did not report its codec.
DEFAULT_CLOCK_RATE: dict[Kind, int] = {Kind.AUDIO: 48000, Kind.VIDEO: 90000}
MEDIA_KINDS = (Kind.AUDIO, Kind.VIDEO)


class Arrivals:
    """When packets (or messages) of one stream arrived: first, last, the longest silence between
    two of them, and a count per second since ``origin`` (the call's start) -- what shows a censor
    that lets a call start and then cuts, stalls or thins it.  Fed by the endpoint with ``now``
    (CLOCK_MONOTONIC seconds); no clock is read here."""

    __slots__ = ("bytes", "count", "first", "last", "max_gap_s", "origin", "per_s")

    def __init__(self, origin: float | None = None) -> None:
        self.origin = origin
        self.count = 0
        self.bytes = 0
        self.first: float | None = None
        self.last: float | None = None
        self.max_gap_s = 0.0
        self.per_s: list[int] = []

    def add(self, now: float, size: int) -> None:
        if self.last is not None:
            self.max_gap_s = max(self.max_gap_s, now - self.last)
        else:
            self.first = now
        self.last = now
        self.count += 1
        self.bytes += size
        if self.origin is not None and now >= self.origin:
            second = int(now - self.origin)
            if second >= len(self.per_s):
                self.per_s.extend([0] * (second + 1 - len(self.per_s)))
            self.per_s[second] += 1

    def to_json(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "last": self.last,
            "max_gap_s": self.max_gap_s,
            "origin": self.origin,
            "per_s": self.per_s,
        }


@dataclass(frozen=True, slots=True)
class ArrivalTimes:
    first: float
    last: float
    max_gap_s: float
    origin: float | None = None
    per_s: tuple[int, ...] = ()


def parse_arrivals(raw: object) -> ArrivalTimes | None:
    if not isinstance(raw, Mapping):
        return None
    first, last, gap = raw.get("first"), raw.get("last"), raw.get("max_gap_s")
    if not (_is_number(first) and _is_number(last) and _is_number(gap)):
        return None
    origin = raw.get("origin")
    per_s = _list(raw.get("per_s"))
    return ArrivalTimes(
        float(first),
        float(last),
        float(gap),
        origin=float(origin) if _is_number(origin) else None,
        per_s=tuple(n for n in per_s if _int(n) is not None),
    )


@dataclass(frozen=True, slots=True)
class RtpEntry:
    """One aiortc RTP stats object, reduced to what the conversion uses."""

    type: str
    kind: Kind
    ssrc: int
    packets_sent: int | None = None
    bytes_sent: int | None = None
    packets_received: int | None = None
    packets_lost: int | None = None
    jitter: int | None = None
    """RTP timestamp units (RFC 3550 A.8), as aiortc reports it."""
    round_trip_time: float | None = None
    """Seconds."""


@dataclass(frozen=True, slots=True)
class Codec:
    mime_type: str
    clock_rate: int


@dataclass(frozen=True, slots=True)
class DataCounts:
    messages_sent: int = 0
    bytes_sent: int = 0
    messages_received: int = 0
    bytes_received: int = 0
    delays_ms: tuple[float, ...] = ()
    arrivals: ArrivalTimes | None = None


@dataclass(frozen=True, slots=True)
class EndpointReport:
    rtp: tuple[RtpEntry, ...] = ()
    transport: Mapping[str, Any] | None = None
    codecs: Mapping[Kind, Codec] = field(default_factory=dict)
    received_bytes: Mapping[int, int] = field(default_factory=dict)
    arrivals: Mapping[int, ArrivalTimes] = field(default_factory=dict)
    frames_sent: Mapping[Kind, int] = field(default_factory=dict)
    frames_received: Mapping[Kind, int] = field(default_factory=dict)
    data: DataCounts | None = None
    candidate_pair: CandidatePair | None = None
    snapshots: tuple[Mapping[str, Any], ...] = ()
    """One-per-second cumulative counters (``Endpoint.snapshot``), for the timeline."""
    gaps: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    """Received silences by kind: (start, length), CLOCK_MONOTONIC seconds."""
    freezes: Mapping[str, tuple[tuple[float, float], ...]] = field(default_factory=dict)
    """Received video freezes by kind (W3C): (start, length)."""
    silences: tuple[tuple[float, float], ...] | None = None
    """Intervals of > 1 s in which nothing at all arrived: (start, length)."""
    last_arrival: float | None = None

    def find(self, type_: str, kind: Kind, ssrc: int | None = None) -> RtpEntry | None:
        for entry in self.rtp:
            if entry.type == type_ and entry.kind == kind and (ssrc is None or entry.ssrc == ssrc):
                return entry
        return None

    def clock_rate(self, kind: Kind) -> int:
        codec = self.codecs.get(kind)
        return codec.clock_rate if codec else DEFAULT_CLOCK_RATE[kind]


def parse_report(raw: Mapping[str, Any]) -> EndpointReport:
    """Turn a report as sent on the wire into an :class:`EndpointReport`.  Entries that do not fit
    the shape are skipped: a report from a half-dead endpoint is still worth what it holds."""
    rtp: list[RtpEntry] = []
    transport: Mapping[str, Any] | None = None
    for item in _list(raw.get("stats")):
        if not isinstance(item, Mapping):
            continue
        type_ = item.get("type")
        if type_ == "transport":
            # With BUNDLE every sender and receiver shares one transport; keep the busiest copy.
            if transport is None or (_int(item.get("packetsSent")) or 0) >= (
                _int(transport.get("packetsSent")) or 0
            ):
                transport = item
            continue
        kind = _kind(item.get("kind"))
        ssrc = _int(item.get("ssrc"))
        if kind not in MEDIA_KINDS or ssrc is None or not isinstance(type_, str):
            continue
        rtt = item.get("roundTripTime")
        rtp.append(
            RtpEntry(
                type=type_,
                kind=kind,
                ssrc=ssrc,
                packets_sent=_int(item.get("packetsSent")),
                bytes_sent=_int(item.get("bytesSent")),
                packets_received=_int(item.get("packetsReceived")),
                packets_lost=_int(item.get("packetsLost")),
                jitter=_int(item.get("jitter")),
                round_trip_time=float(rtt) if _is_number(rtt) else None,
            )
        )
    codecs: dict[Kind, Codec] = {}
    for name, codec in _dict(raw.get("codecs")).items():
        if _kind(name) is not None and isinstance(codec, Mapping):
            mime, rate = codec.get("mimeType"), _int(codec.get("clockRate"))
            if isinstance(mime, str) and rate:
                codecs[Kind(name)] = Codec(mime, rate)
    received_bytes = {
        int(k): v
        for k, v in _dict(raw.get("received_bytes")).items()
        if isinstance(k, str) and k.isdigit() and _int(v) is not None
    }
    frames = _dict(raw.get("frames"))
    data_raw = raw.get("data")
    data = None
    if isinstance(data_raw, Mapping):
        data = DataCounts(
            messages_sent=_int(data_raw.get("messages_sent")) or 0,
            bytes_sent=_int(data_raw.get("bytes_sent")) or 0,
            messages_received=_int(data_raw.get("messages_received")) or 0,
            bytes_received=_int(data_raw.get("bytes_received")) or 0,
            delays_ms=tuple(float(d) for d in _list(data_raw.get("delays_ms")) if _is_number(d)),
            arrivals=parse_arrivals(data_raw.get("arrivals")),
        )
    arrivals: dict[int, ArrivalTimes] = {}
    for key, value in _dict(raw.get("arrivals")).items():
        times = parse_arrivals(value)
        if isinstance(key, str) and key.isdigit() and times is not None:
            arrivals[int(key)] = times
    return EndpointReport(
        snapshots=tuple(x for x in _list(raw.get("snapshots")) if isinstance(x, Mapping)),
        gaps=_intervals(raw.get("gaps")),
        freezes=_intervals(raw.get("freezes")),
        silences=_intervals({"any": raw["silences"]}).get("any") if "silences" in raw else None,
        last_arrival=float(raw["last_arrival"]) if _is_number(raw.get("last_arrival")) else None,
        rtp=tuple(rtp),
        transport=transport,
        codecs=codecs,
        received_bytes=received_bytes,
        arrivals=arrivals,
        frames_sent=_kind_counts(frames.get("sent")),
        frames_received=_kind_counts(frames.get("received")),
        data=data,
        candidate_pair=parse_candidate_pair(raw.get("candidate_pair")),
    )


def _intervals(raw: object) -> dict[str, tuple[tuple[float, float], ...]]:
    out: dict[str, tuple[tuple[float, float], ...]] = {}
    for kind, items in _dict(raw).items():
        pairs = []
        for item in _list(items):
            if isinstance(item, list | tuple) and len(item) == 2 and all(_is_number(v) for v in item):
                pairs.append((float(item[0]), float(item[1])))
        out[str(kind)] = tuple(pairs)
    return out


def parse_candidate_pair(raw: object) -> CandidatePair | None:
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


def build_streams(
    reports: Mapping[Role, EndpointReport | None],
    kinds: Iterable[Kind],
    *,
    t0: float | None = None,
) -> tuple[StreamResult, ...]:
    """One :class:`StreamResult` per endpoint x enabled kind x direction (see ``result`` docs).

    An endpoint that sent no report (it died) gets entries whose own figures are ``None``; the
    figures that belong to its peer are still filled in from the peer's report.  ``t0`` (the
    CLOCK_MONOTONIC start of the call) turns arrival times into seconds since the call started.
    """
    wanted = [k for k in (Kind.AUDIO, Kind.VIDEO, Kind.DATA) if k in set(kinds)]
    out: list[StreamResult] = []
    for role in (Role.CALLER, Role.CALLEE):
        mine, peer = reports.get(role), reports.get(role.peer)
        for kind in wanted:
            if kind is Kind.DATA:
                out.append(_data_stream(role, Direction.SEND, mine, peer))
                recv = _data_stream(role, Direction.RECV, mine, peer)
                out.append(
                    _with_arrivals(recv, mine.data.arrivals if mine and mine.data else None, t0)
                )
            else:
                out.append(_send_stream(role, kind, mine, peer))
                recv = _recv_stream(role, kind, mine, peer)
                times = mine.arrivals.get(recv.ssrc) if mine and recv.ssrc is not None else None
                out.append(_with_arrivals(recv, times, t0))
    return tuple(out)


def _with_arrivals(
    stream: StreamResult, times: ArrivalTimes | None, t0: float | None
) -> StreamResult:
    if times is None or t0 is None:
        return stream
    # Per-second counts only mean "since the call started" if the endpoint counted from t0.
    aligned = times.origin is not None and abs(times.origin - t0) < 1e-6
    return _replace(
        stream,
        first_received_t_s=_round(times.first - t0),
        last_received_t_s=_round(times.last - t0),
        max_gap_ms=_round(times.max_gap_s * 1000.0),
        received_per_s=times.per_s if aligned else None,
    )


def _send_stream(
    role: Role, kind: Kind, mine: EndpointReport | None, peer: EndpointReport | None
) -> StreamResult:
    base = StreamResult(endpoint=role.value, kind=kind, direction=Direction.SEND)
    if mine is None:
        return base
    out = mine.find("outbound-rtp", kind)
    codec = mine.codecs.get(kind)
    if out is None:
        return _replace(base, packets_sent=0, bytes=0, codec=codec.mime_type if codec else None)
    # aiortc labels remote-inbound-rtp with the *reporter's* SSRC (the RTCP packet's), not ours;
    # there is one sender per kind, so the kind identifies it.
    rtcp = mine.find("remote-inbound-rtp", kind)
    theirs = peer.find("inbound-rtp", kind, out.ssrc) if peer else None
    # Prefer the receiver's own final count; RTCP receiver reports lag by up to a report interval.
    measured = theirs or rtcp
    received: int | None
    if theirs is not None:
        received = theirs.packets_received
    elif peer is not None:
        received = 0  # the peer reported and never saw this SSRC
    else:
        received = rtcp.packets_received if rtcp else None
    jitter = measured.jitter if measured else None
    return _replace(
        base,
        packets_sent=out.packets_sent,
        packets_received=received,
        bytes=out.bytes_sent,
        packets_lost=measured.packets_lost if measured else None,
        jitter_ms=_ms(jitter, mine.clock_rate(kind)),
        round_trip_time_ms=_round(rtcp.round_trip_time * 1000.0)
        if rtcp and rtcp.round_trip_time is not None
        else None,
        ssrc=out.ssrc,
        codec=codec.mime_type if codec else None,
        frames=mine.frames_sent.get(kind),
    )


def _recv_stream(
    role: Role, kind: Kind, mine: EndpointReport | None, peer: EndpointReport | None
) -> StreamResult:
    base = StreamResult(endpoint=role.value, kind=kind, direction=Direction.RECV)
    peer_out = peer.find("outbound-rtp", kind) if peer else None
    if mine is None:
        if peer_out is None:
            return base
        return _replace(base, packets_sent=peer_out.packets_sent, ssrc=peer_out.ssrc)
    inbound = mine.find("inbound-rtp", kind, peer_out.ssrc if peer_out else None)
    codec = mine.codecs.get(kind)
    if inbound is None:
        # aiortc lists an inbound stream only once a packet arrived on it.
        return _replace(
            base,
            packets_sent=peer_out.packets_sent if peer_out else None,
            packets_received=0,
            bytes=0,
            ssrc=peer_out.ssrc if peer_out else None,
            codec=codec.mime_type if codec else None,
            frames=mine.frames_received.get(kind, 0),
        )
    sent = peer_out.packets_sent if peer_out else None
    if sent is None:
        sender_report = mine.find("remote-outbound-rtp", kind)
        sent = sender_report.packets_sent if sender_report else None
    return _replace(
        base,
        packets_sent=sent,
        packets_received=inbound.packets_received,
        bytes=mine.received_bytes.get(inbound.ssrc),
        packets_lost=inbound.packets_lost,
        jitter_ms=_ms(inbound.jitter, mine.clock_rate(kind)),
        ssrc=inbound.ssrc,
        codec=codec.mime_type if codec else None,
        frames=mine.frames_received.get(kind),
    )


def _data_stream(
    role: Role, direction: Direction, mine: EndpointReport | None, peer: EndpointReport | None
) -> StreamResult:
    base = StreamResult(endpoint=role.value, kind=Kind.DATA, direction=direction)
    m = mine.data if mine else None
    p = peer.data if peer else None
    if direction is Direction.SEND:
        return _replace(
            base,
            packets_sent=m.messages_sent if m else None,
            packets_received=p.messages_received if p else None,
            bytes=m.bytes_sent if m else None,
            messages=m.messages_sent if m else None,
        )
    delays = m.delays_ms if m else ()
    return _replace(
        base,
        packets_sent=p.messages_sent if p else None,
        packets_received=m.messages_received if m else None,
        bytes=m.bytes_received if m else None,
        messages=m.messages_received if m else None,
        latency_ms_median=_round(statistics.median(delays)) if delays else None,
        latency_ms_max=_round(max(delays)) if delays else None,
    )


def build_transport(role: Role, report: EndpointReport | None) -> TransportResult:
    if report is None:
        return TransportResult(endpoint=role.value)
    t = report.transport or {}
    ice_role, dtls = t.get("iceRole"), t.get("dtlsState")
    return TransportResult(
        endpoint=role.value,
        packets_sent=_int(t.get("packetsSent")),
        packets_received=_int(t.get("packetsReceived")),
        bytes_sent=_int(t.get("bytesSent")),
        bytes_received=_int(t.get("bytesReceived")),
        ice_role=ice_role if isinstance(ice_role, str) else None,
        dtls_state=dtls if isinstance(dtls, str) else None,
        selected_candidate_pair=report.candidate_pair,
    )


def _replace(base: StreamResult, **changes: Any) -> StreamResult:
    return dataclasses.replace(base, **changes)


def _ms(jitter: int | None, clock_rate: int) -> float | None:
    return None if jitter is None else _round(jitter * 1000.0 / clock_rate)


def _round(value: float) -> float:
    return round(value, 3)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _list(value: object) -> Sequence[Any]:
    return value if isinstance(value, list) else []


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _kind_counts(value: object) -> dict[Kind, int]:
    out: dict[Kind, int] = {}
    for name, count in _dict(value).items():
        kind = _kind(name)
        if kind is not None and _int(count) is not None:
            out[kind] = count
    return out


def _kind(name: object) -> Kind | None:
    return Kind(name) if isinstance(name, str) and name in _KIND_VALUES else None


_KIND_VALUES = frozenset(k.value for k in Kind)


# -- quality: timeline, MOS, gaps, freezes, set-up split, candidate ------------------------------


def with_quality(
    result: CallResult,
    reports: Mapping[Role, EndpointReport | None],
    *,
    t0: float,
    media_start: float | None,
    media_end: float | None,
    turn_transport: str | None,
) -> CallResult:
    """``result`` with the computed quality fields filled in (see
    ``testbed.calls.quality``).  ``media_start``/``media_end`` are CLOCK_MONOTONIC."""
    from testbed.calls import quality

    snapshots = {role.value: r.snapshots for role, r in reports.items() if r is not None}
    rates = {
        role.value: {k.value: r.clock_rate(k) for k in MEDIA_KINDS}
        for role, r in reports.items()
        if r is not None
    }
    gaps = {role.value: r.gaps.get("audio", ()) for role, r in reports.items() if r is not None}
    freezes = {role.value: r.freezes.get("video", ()) for role, r in reports.items() if r is not None}
    samples = quality.build_samples(snapshots, t0=t0, clock_rates=rates, gaps=gaps, freezes=freezes)
    start_s = None if media_start is None else media_start - t0
    end_s = None if media_end is None else media_end - t0
    in_call = quality.window_samples(samples, start_s or 0.0, end_s) if start_s is not None else []
    per_endpoint = {role.value: quality.receive_stats(in_call, role.value) for role in Role}
    media_s = result.media_s or 0.0
    streams = []
    for st in result.streams:
        if st.direction is not Direction.RECV:
            streams.append(st)
            continue
        q = per_endpoint[st.endpoint]
        if st.kind is Kind.AUDIO:
            g = gaps.get(st.endpoint, ())
            streams.append(
                _replace(
                    st,
                    mos=q.mos,
                    audio_gap_max_ms=_round(max((length for _, length in g), default=0.0) * 1000.0)
                    if st.endpoint in gaps
                    else None,
                    audio_gap_total_ms=_round(
                        sum(max(0.0, length - 0.020) for _, length in g) * 1000.0
                    )
                    if st.endpoint in gaps
                    else None,
                )
            )
        elif st.kind is Kind.VIDEO:
            f = freezes.get(st.endpoint)
            streams.append(
                _replace(
                    st,
                    freeze_count=None if f is None else len(f),
                    freeze_total_ms=None if f is None else _round(sum(x for _, x in f) * 1000.0),
                )
            )
        else:
            sent = st.packets_sent
            got = st.packets_received
            streams.append(
                _replace(
                    st,
                    throughput_kbps=_round((st.bytes or 0) * 8 / 1000.0 / media_s)
                    if media_s > 0 and st.bytes is not None
                    else None,
                    message_loss_pct=_round(100.0 * max(0, sent - (got or 0)) / sent)
                    if sent
                    else None,
                )
            )
    exact = {st.endpoint: st.message_loss_pct for st in streams if st.kind is Kind.DATA and st.direction is Direction.RECV}
    for who, loss in exact.items():
        # Over the whole call, messages sent vs received is exact (a window only approximates it:
        # messages in flight at its edges).
        per_endpoint[who] = dataclasses.replace(per_endpoint[who], message_loss_pct=loss)
    moses = [q.mos for q in per_endpoint.values() if q.mos is not None]
    silences: dict[str, list[list[float]]] | None = None
    if all(r is not None and r.silences is not None for r in reports.values()) and start_s is not None:
        silences = {}
        for role, report in reports.items():
            assert report is not None and report.silences is not None
            spans = [[_round(s - t0), _round(n)] for s, n in report.silences]
            last = report.last_arrival
            end = end_s if end_s is not None else None
            # A silence that lasts until the hang-up has no closing packet: add it.
            tail_from = (last - t0) if last is not None else start_s
            if end is not None and end - tail_from >= 1.0:
                spans.append([_round(tail_from), _round(end - tail_from)])
            silences[role.value] = spans
    ctype, ctransport = candidate_summary(result.transports, turn_transport)
    ice_ms, dtls_ms = setup_split(result.state_timeline)
    return dataclasses.replace(
        result,
        streams=tuple(streams),
        samples=tuple(samples),
        quality={
            name: {k: v for k, v in dataclasses.asdict(q).items()} for name, q in per_endpoint.items()
        },
        mos=min(moses) if moses else None,
        mos_r0=quality.R0 if moses else None,
        loss_pct=_worst([q.loss_pct for q in per_endpoint.values()]),
        jitter_ms=_worst([q.jitter_ms for q in per_endpoint.values()]),
        rtt_ms=_worst([q.rtt_ms for q in per_endpoint.values()]),
        candidate_type=ctype,
        candidate_transport=ctransport,
        setup_ice_ms=ice_ms,
        setup_dtls_ms=dtls_ms,
        silences=silences,
    )


def _worst(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


_TYPE_RANK = {"host": 0, "prflx": 1, "srflx": 2, "relay": 3}


def candidate_summary(
    transports: Iterable[TransportResult], turn_transport: str | None
) -> tuple[str | None, str | None]:
    """(type, transport) of the call's path: the most indirect candidate in either endpoint's
    selected pair; for a relay, how the relaying endpoint reaches its TURN server.

    Both ends of a pair count: ICE pairs a server-reflexive candidate's *base* (a host
    candidate) with the peer's candidates (RFC 8445 section 6.1.2.4), so a call through NAT
    shows as host locally and srflx/prflx remotely."""
    best: tuple[int, str, str] | None = None
    for t in transports:
        pair = t.selected_candidate_pair
        if pair is None:
            continue
        for kind in (pair.local_type, pair.remote_type):
            rank = _TYPE_RANK.get(kind, 0)
            if best is None or rank > best[0]:
                best = (rank, kind, pair.protocol)
    if best is None:
        return None, None
    _, kind, protocol = best
    if kind == "relay":
        return "relay", turn_transport or protocol
    return kind, protocol


def setup_split(timeline: Iterable[tuple[float, str]]) -> tuple[float | None, float | None]:
    """(offer sent -> ICE connected at both endpoints, that -> DTLS connected at both), in ms."""
    offer: float | None = None
    ice: dict[str, float] = {}
    dtls: dict[str, float] = {}
    for t, label in timeline:
        who, _, rest = label.partition(":")
        layer, _, state = rest.partition(":")
        if who == "caller" and layer == "signalling" and state == "offer-sent" and offer is None:
            offer = t
        elif layer == "ice-connection" and state in ("completed", "connected") and who not in ice:
            ice[who] = t
        elif layer == "dtls" and state == "connected" and who not in dtls:
            dtls[who] = t
    if offer is None or len(ice) < 2:
        return None, None
    ice_done = max(ice.values())
    ice_ms = _round((ice_done - offer) * 1000.0)
    if len(dtls) < 2:
        return ice_ms, None
    return ice_ms, _round(max(0.0, max(dtls.values()) - ice_done) * 1000.0)
