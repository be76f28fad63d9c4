"""Endpoint reports -> stream and transport results (sans-IO, pure functions).

An endpoint's final :class:`~testbed.calls.signalling.Stats` message carries its report: an
:class:`~testbed.calls.endpoint_report.EndpointReport` (the typed record, its wire shape drawn
there), written by the endpoint with ``to_json`` and read back here with :func:`parse_report`.

Nothing here imports aiortc: the orchestrator stays light and this is unit-tested on crafted data.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from testbed.calls.endpoint_report import (
    DEFAULT_CLOCK_RATE,
    MEDIA_KINDS,
    ArrivalTimes,
    Codec,
    DataCounts,
    EndpointReport,
    RtpStats,
    StatsType,
    TransportStats,
    candidate_pair_from_json,
)
from testbed.calls.result import (
    CallResult,
    Direction,
    Kind,
    StreamResult,
    TransportResult,
)
from testbed.calls.signalling import Role
from testbed.records.json import JsonObject
from testbed.records.timeline import Layer, Party, TimelineEntry

__all__ = [  # the report's records, re-exported for the modules that read them from here
    "DEFAULT_CLOCK_RATE",
    "MEDIA_KINDS",
    "ArrivalTimes",
    "Arrivals",
    "Codec",
    "DataCounts",
    "EndpointReport",
    "RtpEntry",
    "build_streams",
    "build_transport",
    "candidate_summary",
    "parse_arrivals",
    "parse_candidate_pair",
    "parse_report",
    "setup_split",
    "with_quality",
]


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

    def to_json(self) -> JsonObject:
        return {
            "first": self.first,
            "last": self.last,
            "max_gap_s": self.max_gap_s,
            "origin": self.origin,
            "per_s": self.per_s,
        }

    def times(self) -> ArrivalTimes | None:
        """The record of what arrived; ``None`` while nothing has."""
        if self.first is None or self.last is None:
            return None
        return ArrivalTimes(self.first, self.last, self.max_gap_s, self.origin, tuple(self.per_s))


def parse_arrivals(raw: object) -> ArrivalTimes | None:
    return ArrivalTimes.from_json(raw)


def parse_report(raw: Mapping[str, Any]) -> EndpointReport:
    """Turn a report as sent on the wire into an :class:`EndpointReport`.  Entries that do not fit
    the shape are skipped: a report from a half-dead endpoint is still worth what it holds."""
    return EndpointReport.from_json(raw)


parse_candidate_pair = candidate_pair_from_json
RtpEntry = RtpStats  # the name this module used before the record existed


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
                out.append(_with_arrivals(recv, mine.data.arrivals if mine and mine.data else None, t0))
            else:
                out.append(_send_stream(role, kind, mine, peer))
                recv = _recv_stream(role, kind, mine, peer)
                times = mine.arrivals.get(recv.ssrc) if mine and recv.ssrc is not None else None
                out.append(_with_arrivals(recv, times, t0))
    return tuple(out)


def _with_arrivals(stream: StreamResult, times: ArrivalTimes | None, t0: float | None) -> StreamResult:
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


def _send_stream(role: Role, kind: Kind, mine: EndpointReport | None, peer: EndpointReport | None) -> StreamResult:
    base = StreamResult(endpoint=role.value, kind=kind, direction=Direction.SEND)
    if mine is None:
        return base
    out = mine.find(StatsType.OUTBOUND_RTP, kind)
    codec = mine.codecs.get(kind)
    if out is None:
        return _replace(base, packets_sent=0, bytes=0, codec=codec.mime_type if codec else None)
    # aiortc labels remote-inbound-rtp with the *reporter's* SSRC (the RTCP packet's), not ours;
    # there is one sender per kind, so the kind identifies it.
    rtcp = mine.find(StatsType.REMOTE_INBOUND_RTP, kind)
    theirs = peer.find(StatsType.INBOUND_RTP, kind, out.ssrc) if peer else None
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
        round_trip_time_ms=_round(rtcp.round_trip_time * 1000.0) if rtcp and rtcp.round_trip_time is not None else None,
        ssrc=out.ssrc,
        codec=codec.mime_type if codec else None,
        frames=mine.frames_sent.get(kind),
        frames_due=mine.frames_due.get(kind),
    )


def _recv_stream(role: Role, kind: Kind, mine: EndpointReport | None, peer: EndpointReport | None) -> StreamResult:
    base = StreamResult(endpoint=role.value, kind=kind, direction=Direction.RECV)
    peer_out = peer.find(StatsType.OUTBOUND_RTP, kind) if peer else None
    if mine is None:
        if peer_out is None:
            return base
        return _replace(base, packets_sent=peer_out.packets_sent, ssrc=peer_out.ssrc)
    inbound = mine.find(StatsType.INBOUND_RTP, kind, peer_out.ssrc if peer_out else None)
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
        sender_report = mine.find(StatsType.REMOTE_OUTBOUND_RTP, kind)
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
    t = report.transport or TransportStats()
    return TransportResult(
        endpoint=role.value,
        packets_sent=t.packets_sent,
        packets_received=t.packets_received,
        bytes_sent=t.bytes_sent,
        bytes_received=t.bytes_received,
        ice_role=t.ice_role,
        dtls_state=t.dtls_state,
        selected_candidate_pair=report.candidate_pair,
    )


def _replace(base: StreamResult, **changes: Any) -> StreamResult:
    return dataclasses.replace(base, **changes)


def _ms(jitter: int | None, clock_rate: int) -> float | None:
    return None if jitter is None else _round(jitter * 1000.0 / clock_rate)


def _round(value: float) -> float:
    return round(value, 3)


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

    snapshots = {role.value: [s.to_json() for s in r.snapshots] for role, r in reports.items() if r is not None}
    rates = {
        role.value: {k.value: r.clock_rate(k) for k in MEDIA_KINDS} for role, r in reports.items() if r is not None
    }
    gaps = {role.value: r.gaps.get(Kind.AUDIO, ()) for role, r in reports.items() if r is not None}
    freezes = {role.value: r.freezes.get(Kind.VIDEO, ()) for role, r in reports.items() if r is not None}
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
                    audio_gap_total_ms=_round(sum(max(0.0, length - 0.020) for _, length in g) * 1000.0)
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
                    message_loss_pct=_round(100.0 * max(0, sent - (got or 0)) / sent) if sent else None,
                )
            )
    exact = {
        st.endpoint: st.message_loss_pct for st in streams if st.kind is Kind.DATA and st.direction is Direction.RECV
    }
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
        quality={name: {k: v for k, v in dataclasses.asdict(q).items()} for name, q in per_endpoint.items()},
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


def setup_split(timeline: Iterable[TimelineEntry]) -> tuple[float | None, float | None]:
    """(offer sent -> ICE connected at both endpoints, that -> DTLS connected at both), in ms."""
    offer: float | None = None
    ice: dict[Party, float] = {}
    dtls: dict[Party, float] = {}
    for e in timeline:
        who, layer, state, t = e.who, e.layer, e.state, e.t
        if e.is_(Party.CALLER, Layer.SIGNALLING, "offer-sent") and offer is None:
            offer = t
        elif layer is Layer.ICE_CONNECTION and state in ("completed", "connected") and who not in ice:
            ice[who] = t
        elif layer is Layer.DTLS and state == "connected" and who not in dtls:
            dtls[who] = t
    if offer is None or len(ice) < 2:
        return None, None
    ice_done = max(ice.values())
    ice_ms = _round((ice_done - offer) * 1000.0)
    if len(dtls) < 2:
        return ice_ms, None
    return ice_ms, _round(max(0.0, max(dtls.values()) - ice_done) * 1000.0)
