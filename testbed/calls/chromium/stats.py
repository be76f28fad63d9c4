"""Chromium's ``getStats()`` -> testbed's endpoint records (sans-IO: no clock, no I/O).

The Chromium endpoint polls the page (``tb.poll()``) every :data:`POLL_INTERVAL_S` and feeds each
reply, with the CLOCK_MONOTONIC time it was taken, to :class:`Reception`; every sample interval it
turns the latest reply into a :class:`~testbed.calls.endpoint_report.Snapshot`
(:func:`snapshot`), and at hang-up into an :class:`~testbed.calls.endpoint_report.EndpointReport`
(:func:`report`).  Those are the records an aiortc endpoint produces, so metrics, samples, MOS,
verdicts and expectations never know which engine measured them.

Mapping (W3C webrtc-stats as Chromium fills it; units converted to what aiortc reports):

=========================  ====================================================================
testbed                    Chromium
=========================  ====================================================================
send packets/bytes         outbound-rtp packetsSent / bytesSent (RTP payload bytes)
send lost, jitter, RTT     remote-inbound-rtp packetsLost, jitter (s -> RTP units), roundTripTime
recv packets/bytes/lost    inbound-rtp packetsReceived / bytesReceived / packetsLost
recv jitter                inbound-rtp jitter (s -> RTP units, x codec clock rate)
frames                     video: framesEncoded / framesDecoded; audio: packets (one 20 ms Opus
                           frame per packet, as aiortc counts them)
freezes                    inbound-rtp freezeCount / totalFreezesDuration (Chromium's own W3C
                           freeze detector), placed at the poll that saw them
audio gaps, silences,      from inbound-rtp packetsReceived and lastPacketReceivedTimestamp, as
arrivals                   seen at each poll: a gap shorter than one poll interval is not seen
selected pair              transport.selectedCandidatePairId -> candidate-pair -> candidates
available bitrate          candidate-pair availableOutgoingBitrate (Google congestion control's
                           estimate): the send samples' ``available_kbps``
=========================  ====================================================================
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from testbed.calls.endpoint_report import (
    DEFAULT_CLOCK_RATE,
    MEDIA_KINDS,
    ArrivalTimes,
    Codec,
    Counters,
    DataCounts,
    EndpointReport,
    Interval,
    KindSnapshot,
    RtpStats,
    Snapshot,
    StatsType,
    TransportStats,
    as_int,
    is_number,
)
from testbed.calls.result import CandidatePair, Kind

POLL_INTERVAL_S = 0.1
"""How often the endpoint reads the page's counters: the resolution of gaps and silences."""
AUDIO_GAP_THRESHOLD_S = 0.060  # as the aiortc endpoint (quality.audio_gap_threshold_s): 3 x 20 ms packets
SILENCE_THRESHOLD_S = 1.0
AUDIO_PTIME_S = 0.020  # Chromium's Opus packets carry 20 ms (ptime) unless told otherwise
MAX_INTERVALS = 10000

_RTP_TYPES = {
    "outbound-rtp": StatsType.OUTBOUND_RTP,
    "inbound-rtp": StatsType.INBOUND_RTP,
    "remote-inbound-rtp": StatsType.REMOTE_INBOUND_RTP,
    "remote-outbound-rtp": StatsType.REMOTE_OUTBOUND_RTP,
}


@dataclass(frozen=True, slots=True)
class Inbound:
    """What a poll says about one received stream (beyond :class:`RtpStats`)."""

    kind: Kind
    ssrc: int
    packets: int
    bytes: int
    last_packet_ms: float | None
    """lastPacketReceivedTimestamp: the page's epoch milliseconds."""
    frames_decoded: int | None
    freeze_count: int | None
    freezes_s: float | None


@dataclass(frozen=True, slots=True)
class Poll:
    """One ``tb.poll()`` reply, parsed."""

    now_ms: float
    """performance.now() when the page read its stats."""
    epoch_ms: float
    """performance.timeOrigin + performance.now() at the same moment (stats timestamps' base)."""
    rtp: tuple[RtpStats, ...] = ()
    inbound: Mapping[Kind, Inbound] = field(default_factory=dict)
    frames_encoded: Mapping[Kind, int] = field(default_factory=dict)
    transport: TransportStats | None = None
    pair: CandidatePair | None = None
    available_kbps: float | None = None
    codecs: Mapping[Kind, Codec] = field(default_factory=dict)
    data: DataCounts = field(default_factory=DataCounts)

    def clock_rate(self, kind: Kind) -> int:
        codec = self.codecs.get(kind)
        return codec.clock_rate if codec else DEFAULT_CLOCK_RATE[kind]

    def find(self, type_: StatsType, kind: Kind) -> RtpStats | None:
        return next((e for e in self.rtp if e.type is type_ and e.kind is kind), None)


def _num(value: object) -> float | None:
    return float(value) if is_number(value) else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def parse_poll(raw: Mapping[str, Any]) -> Poll:
    """A page reply -> :class:`Poll`.  Lenient, as the endpoint report is: an entry that does not
    fit is skipped (a half-torn-down page still reports what it has)."""
    entries = [e for e in raw.get("stats", ()) if isinstance(e, Mapping)] if isinstance(raw.get("stats"), list) else []
    by_id = {e["id"]: e for e in entries if isinstance(e.get("id"), str)}
    codec_of: dict[Kind, Codec] = {}
    rtp: list[RtpStats] = []
    inbound: dict[Kind, Inbound] = {}
    encoded: dict[Kind, int] = {}
    for e in entries:
        type_ = _RTP_TYPES.get(str(e.get("type")))
        kind_name, ssrc = e.get("kind"), as_int(e.get("ssrc"))
        if type_ is None or kind_name not in ("audio", "video") or ssrc is None:
            continue
        kind = Kind(kind_name)
        codec = by_id.get(str(e.get("codecId")))
        if codec is not None and isinstance(codec.get("mimeType"), str) and as_int(codec.get("clockRate")):
            codec_of.setdefault(kind, Codec(codec["mimeType"], int(codec["clockRate"])))
        rtp.append(_rtp_entry(type_, kind, ssrc, e))
        if type_ is StatsType.INBOUND_RTP:
            inbound[kind] = Inbound(
                kind=kind,
                ssrc=ssrc,
                packets=as_int(e.get("packetsReceived")) or 0,
                bytes=as_int(e.get("bytesReceived")) or 0,
                last_packet_ms=_num(e.get("lastPacketReceivedTimestamp")),
                frames_decoded=as_int(e.get("framesDecoded")),
                freeze_count=as_int(e.get("freezeCount")),
                freezes_s=_num(e.get("totalFreezesDuration")),
            )
        elif type_ is StatsType.OUTBOUND_RTP and as_int(e.get("framesEncoded")) is not None:
            encoded[kind] = int(e["framesEncoded"])
    # Jitter arrives in seconds; aiortc (and so the records) use RTP timestamp units.
    rates = {kind: codec_of[kind].clock_rate if kind in codec_of else DEFAULT_CLOCK_RATE[kind] for kind in MEDIA_KINDS}
    rtp = [
        _with_jitter_units(entry, by_ssrc_jitter, rates[entry.kind])
        for entry, by_ssrc_jitter in ((r, _jitter_s(entries, r)) for r in rtp)
    ]
    transport_raw = next((e for e in entries if e.get("type") == "transport"), None)
    transport = None
    pair = None
    available = None
    if transport_raw is not None:
        transport = TransportStats(
            id=_str(transport_raw.get("id")),
            timestamp=_seconds(transport_raw.get("timestamp")),
            packets_sent=as_int(transport_raw.get("packetsSent")),
            packets_received=as_int(transport_raw.get("packetsReceived")),
            bytes_sent=as_int(transport_raw.get("bytesSent")),
            bytes_received=as_int(transport_raw.get("bytesReceived")),
            ice_role=_str(transport_raw.get("iceRole")),
            dtls_state=_str(transport_raw.get("dtlsState")),
        )
        selected = by_id.get(str(transport_raw.get("selectedCandidatePairId")))
        if selected is not None:
            pair = _pair(selected, by_id)
            bitrate = _num(selected.get("availableOutgoingBitrate"))
            available = None if bitrate is None else round(bitrate / 1000.0, 3)
    data_raw = raw.get("data")
    data = DataCounts.from_json(data_raw) if isinstance(data_raw, Mapping) else None
    return Poll(
        now_ms=_num(raw.get("now")) or 0.0,
        epoch_ms=_num(raw.get("epoch")) or 0.0,
        rtp=tuple(rtp),
        inbound=inbound,
        frames_encoded=encoded,
        transport=transport,
        pair=pair,
        available_kbps=available,
        codecs=codec_of,
        data=data or DataCounts(),
    )


def _seconds(value: object) -> float | None:
    ms = _num(value)
    return None if ms is None else ms / 1000.0


def _rtp_entry(type_: StatsType, kind: Kind, ssrc: int, e: Mapping[str, Any]) -> RtpStats:
    sent = type_ in (StatsType.OUTBOUND_RTP, StatsType.REMOTE_OUTBOUND_RTP)
    received = type_ in (StatsType.INBOUND_RTP, StatsType.REMOTE_INBOUND_RTP)
    return RtpStats(
        type=type_,
        kind=kind,
        ssrc=ssrc,
        id=_str(e.get("id")),
        timestamp=_seconds(e.get("timestamp")),
        transport_id=_str(e.get("transportId")),
        packets_sent=as_int(e.get("packetsSent")) if sent else None,
        bytes_sent=as_int(e.get("bytesSent")) if sent else None,
        packets_received=as_int(e.get("packetsReceived")) if received else None,
        packets_lost=as_int(e.get("packetsLost")) if received else None,
        round_trip_time=_num(e.get("roundTripTime")),
        fraction_lost=_num(e.get("fractionLost")),
        track_id=_str(e.get("trackIdentifier")),
        remote_timestamp=_seconds(e.get("remoteTimestamp")),
    )


def _jitter_s(entries: Sequence[Mapping[str, Any]], entry: RtpStats) -> float | None:
    for e in entries:
        if e.get("id") == entry.id:
            return _num(e.get("jitter"))
    return None


def _with_jitter_units(entry: RtpStats, jitter_s: float | None, clock_rate: int) -> RtpStats:
    if jitter_s is None:
        return entry
    from dataclasses import replace

    return replace(entry, jitter=round(jitter_s * clock_rate))


def _pair(selected: Mapping[str, Any], by_id: Mapping[str, Mapping[str, Any]]) -> CandidatePair | None:
    local, remote = by_id.get(str(selected.get("localCandidateId"))), by_id.get(str(selected.get("remoteCandidateId")))
    if local is None or remote is None:
        return None
    try:
        return CandidatePair(
            protocol=str(local.get("protocol") or "udp").lower(),
            local_address=str(local.get("address") or local.get("ip")),
            local_port=int(local["port"]),
            local_type=str(local["candidateType"]),
            remote_address=str(remote.get("address") or remote.get("ip")),
            remote_port=int(remote["port"]),
            remote_type=str(remote["candidateType"]),
        )
    except (KeyError, TypeError, ValueError):
        return None


# -- snapshots ------------------------------------------------------------------------------------


def snapshot(t: float, poll: Poll, *, data_channel: bool) -> Snapshot:
    """The cumulative counters of ``poll`` as the aiortc endpoint's ``Endpoint.snapshot`` would
    give them, taken at ``t`` (CLOCK_MONOTONIC)."""
    kinds: dict[Kind, KindSnapshot] = {}
    for kind in MEDIA_KINDS:
        out_rtp = poll.find(StatsType.OUTBOUND_RTP, kind)
        rtcp = poll.find(StatsType.REMOTE_INBOUND_RTP, kind)
        inbound = poll.inbound.get(kind)
        in_rtp = poll.find(StatsType.INBOUND_RTP, kind)
        out = None
        if out_rtp is not None:
            out = Counters(
                packets=out_rtp.packets_sent or 0,
                bytes=out_rtp.bytes_sent or 0,
                lost=rtcp.packets_lost if rtcp else None,
                reported_received=rtcp.packets_received if rtcp else None,
                jitter=float(rtcp.jitter) if rtcp and rtcp.jitter is not None else None,
                frames=poll.frames_encoded.get(kind, out_rtp.packets_sent or 0)
                if kind is Kind.VIDEO
                else out_rtp.packets_sent or 0,
            )
        in_ = None
        if inbound is not None and in_rtp is not None:
            in_ = Counters(
                packets=inbound.packets,
                bytes=inbound.bytes,
                lost=in_rtp.packets_lost,
                jitter=float(in_rtp.jitter) if in_rtp.jitter is not None else None,
                frames=(inbound.frames_decoded or 0) if kind is Kind.VIDEO else inbound.packets,
            )
        if out is not None or in_ is not None:
            kinds[kind] = KindSnapshot(
                out=out,
                in_=in_,
                rtt=rtcp.round_trip_time if rtcp else None,
                available_kbps=poll.available_kbps if out is not None else None,
            )
    if data_channel:
        d = poll.data
        kinds[Kind.DATA] = KindSnapshot(
            out=Counters(packets=d.messages_sent, bytes=d.bytes_sent, messages=d.messages_sent),
            in_=Counters(packets=d.messages_received, bytes=d.bytes_received, messages=d.messages_received),
        )
    return Snapshot(t=t, kinds=kinds)


# -- reception timing -----------------------------------------------------------------------------


class _Stream:
    """Arrival timing of one received kind, as far as polls show it."""

    def __init__(self, origin: float | None, pace_s: float | None) -> None:
        self.origin = origin
        self.pace_s = pace_s
        self.packets = 0
        self.first: float | None = None
        self.last: float | None = None
        self.silent_since_poll: float | None = None
        """Time of the last poll that saw packets, if a later poll saw none."""
        self.prev_poll: float | None = None
        self.per_s: list[int] = []
        self.gaps: list[Interval] = []
        self.max_gap_s = 0.0

    def update(self, now: float, packets: int, last_at: float | None, threshold_s: float) -> bool:
        new = packets - self.packets
        prev_poll = self.prev_poll
        self.prev_poll = now
        if new <= 0:
            return False
        self.packets = packets
        last = min(last_at, now) if last_at is not None else now
        # The first packet of this batch came after the previous poll; at a steady pace, the
        # batch's packets are ``pace`` apart and the last one arrived at ``last``.
        earliest = prev_poll if prev_poll is not None else last
        first_of_batch = max(earliest, last - (new - 1) * self.pace_s) if self.pace_s else earliest
        first_of_batch = min(first_of_batch, last)
        if self.first is None:
            self.first = first_of_batch
        elif self.last is not None:
            gap = first_of_batch - self.last
            self.max_gap_s = max(self.max_gap_s, gap)
            if gap > threshold_s and len(self.gaps) < MAX_INTERVALS:
                self.gaps.append((self.last, gap))
        self.last = last
        if self.origin is not None and last >= self.origin:
            second = int(last - self.origin)
            if second >= len(self.per_s):
                self.per_s.extend([0] * (second + 1 - len(self.per_s)))
            self.per_s[second] += new
        return True

    def times(self) -> ArrivalTimes | None:
        if self.first is None or self.last is None:
            return None
        return ArrivalTimes(self.first, self.last, self.max_gap_s, self.origin, tuple(self.per_s))


class Reception:
    """What arrived when, from successive polls: per-kind arrivals and audio gaps, silences of
    every kind together, video freezes.  ``update(now, poll)``: ``now`` is the CLOCK_MONOTONIC
    time the poll's reply was read (the page's ``epoch_ms`` at that moment maps its timestamps)."""

    def __init__(self, origin: float | None) -> None:
        self._origin = origin
        self._streams: dict[Kind, _Stream] = {}
        self._ssrc: dict[Kind, int] = {}
        self._data = _Stream(origin, None)
        self._any = _Stream(None, None)
        self._any_count = 0
        self._freeze_count: dict[Kind, int] = {}
        self._freezes_s: dict[Kind, float] = {}
        self.freezes: dict[Kind, list[Interval]] = {}
        self.first_received: list[Kind] = []
        """Kinds in the order their first packet was seen (for ``media:first-<kind>-received``)."""

    def update(self, now: float, poll: Poll) -> list[Kind]:
        """Feed one poll; returns the kinds whose first packet this poll saw."""
        firsts: list[Kind] = []
        for kind, inbound in poll.inbound.items():
            stream = self._streams.setdefault(
                kind, _Stream(self._origin, AUDIO_PTIME_S if kind is Kind.AUDIO else None)
            )
            self._ssrc[kind] = inbound.ssrc
            last_at = None
            if inbound.last_packet_ms is not None and poll.epoch_ms:
                last_at = now - (poll.epoch_ms - inbound.last_packet_ms) / 1000.0
            threshold = AUDIO_GAP_THRESHOLD_S if kind is Kind.AUDIO else SILENCE_THRESHOLD_S
            had = stream.first is not None
            stream.update(now, inbound.packets, last_at, threshold)
            if not had and stream.first is not None:
                firsts.append(kind)
                self.first_received.append(kind)
            if inbound.freeze_count is not None:
                before = self._freeze_count.get(kind, 0)
                if inbound.freeze_count > before:
                    total = inbound.freezes_s or 0.0
                    length = max(0.0, total - self._freezes_s.get(kind, 0.0)) / (inbound.freeze_count - before)
                    spans = self.freezes.setdefault(kind, [])
                    for i in range(inbound.freeze_count - before):
                        if len(spans) < MAX_INTERVALS:
                            spans.append((now - length * (inbound.freeze_count - before - i), length))
                    self._freeze_count[kind] = inbound.freeze_count
                    self._freezes_s[kind] = total
        self._data.update(now, poll.data.messages_received, None, SILENCE_THRESHOLD_S)
        # Anything at all: media packets of every kind and data messages, for silences.
        count = sum(i.packets for i in poll.inbound.values()) + poll.data.messages_received
        lasts = [s.last for s in (*self._streams.values(), self._data) if s.last is not None]
        self._any.update(now, count, max(lasts) if lasts else None, SILENCE_THRESHOLD_S)
        return firsts

    @property
    def last_arrival(self) -> float | None:
        return self._any.last

    @property
    def silences(self) -> tuple[Interval, ...]:
        return tuple(self._any.gaps)

    def audio_gaps(self) -> tuple[Interval, ...]:
        stream = self._streams.get(Kind.AUDIO)
        return tuple(stream.gaps) if stream else ()

    def arrivals(self) -> dict[int, ArrivalTimes]:
        out: dict[int, ArrivalTimes] = {}
        for kind, stream in self._streams.items():
            times = stream.times()
            if times is not None:
                out[self._ssrc[kind]] = times
        return out

    def data_arrivals(self) -> ArrivalTimes | None:
        return self._data.times()


def report(
    poll: Poll,
    reception: Reception,
    *,
    snapshots: Sequence[Snapshot],
    data_channel: bool,
    delays_ms: Sequence[float],
    codecs: Mapping[Kind, Codec] | None = None,
) -> EndpointReport:
    """The final :class:`EndpointReport` from the last poll and everything polled before."""
    frames_sent: dict[Kind, int] = {}
    frames_received: dict[Kind, int] = {}
    for kind in MEDIA_KINDS:
        out = poll.find(StatsType.OUTBOUND_RTP, kind)
        if out is not None:
            frames_sent[kind] = poll.frames_encoded.get(kind, 0) if kind is Kind.VIDEO else out.packets_sent or 0
        inbound = poll.inbound.get(kind)
        if inbound is not None:
            frames_received[kind] = (inbound.frames_decoded or 0) if kind is Kind.VIDEO else inbound.packets
    d = poll.data
    return EndpointReport(
        rtp=poll.rtp,
        transport=poll.transport,
        codecs=dict(codecs) if codecs else dict(poll.codecs),
        received_bytes={i.ssrc: i.bytes for i in poll.inbound.values()},
        arrivals=reception.arrivals(),
        frames_sent=frames_sent,
        frames_received=frames_received,
        data=DataCounts(
            messages_sent=d.messages_sent,
            bytes_sent=d.bytes_sent,
            messages_received=d.messages_received,
            bytes_received=d.bytes_received,
            delays_ms=tuple(delays_ms),
            arrivals=reception.data_arrivals(),
        )
        if data_channel
        else None,
        candidate_pair=poll.pair,
        snapshots=tuple(snapshots),
        gaps={Kind.AUDIO: reception.audio_gaps()} if Kind.AUDIO in poll.inbound else {},
        silences=reception.silences,
        last_arrival=reception.last_arrival,
        freezes={Kind.VIDEO: tuple(reception.freezes.get(Kind.VIDEO, ()))} if Kind.VIDEO in poll.inbound else {},
    )
