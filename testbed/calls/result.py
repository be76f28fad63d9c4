"""The measured outcome of one call: :class:`CallResult` and its JSON contract.

``CallResult.to_json()`` is a documented contract that CI users build bars on: fields are only ever
added, never renamed or removed.  Every key is always present; an unknown value is ``null``.

An example, abridged from a real 5 s audio + data call between two namespaces on a bare veth::

    {
      "name": "baseline", "connected": true,
      "setup_ms": 44.463,     # caller's offer sent -> the later endpoint's "connected" state
      "media_s": 5.001,       # both connected -> hang-up (null if never connected)
      "wall_s": 5.67,         # run_call start -> return, endpoint process start-up included
      "state_timeline": [[0.314131, "caller:endpoint:ready"], [0.32628, "callee:endpoint:ready"],
                         [0.32628, "relay:signalling:dial"], ..., [5.652616, "relay:call:ended"]],
      "streams": [
        {"endpoint": "caller", "kind": "audio", "direction": "send", "packets_sent": 251,
         "packets_received": 251, "bytes": 75220, "packets_lost": 0, "jitter_ms": 1.146,
         "round_trip_time_ms": 0.999, "ssrc": 1737905, "codec": "audio/opus", "frames": 251,
         "messages": null, "latency_ms_median": null, "latency_ms_max": null},
        ...,
        {"endpoint": "caller", "kind": "data", "direction": "recv", "packets_sent": 50,
         "packets_received": 50, "bytes": 5000, "packets_lost": null, "jitter_ms": null,
         "round_trip_time_ms": null, "ssrc": null, "codec": null, "frames": null,
         "messages": 50, "latency_ms_median": 0.387, "latency_ms_max": 0.982,
         "first_received_t_s": 0.44, "last_received_t_s": 5.35, "max_gap_ms": 102.1,
         "received_per_s": [0, 6, 10, 10, 10, 10, 4]}, ...],
      "transports": [
        {"endpoint": "caller", "packets_sent": 370, "packets_received": 369,
         "bytes_sent": 97919, "bytes_received": 103871, "ice_role": "controlling",
         "dtls_state": "connected", "selected_candidate_pair": {...}}, ...],
      "selected_candidate_pair": {      # the caller's view (the callee's if the caller has none)
        "protocol": "udp", "local_address": "198.18.250.1", "local_port": 38025,
        "local_type": "host", "remote_address": "198.18.250.2", "remote_port": 33032,
        "remote_type": "host", "family": "v4"},   # family: v4 | v6 (null for an mDNS name)
      "candidate_family": "v4", # the selected pair's family (ip: dual shows which one won)
      "error": null            # why the call failed or ended early, else null
    }

Timeline entries are ``[t_s, "<who>:<layer>:<state>"]``, sorted by ``t_s``: seconds since
``run_call`` started (endpoint processes stamp their own entries with CLOCK_MONOTONIC, which all
processes of a run share).  ``who`` is ``caller``, ``callee`` or ``relay``; layers and states:

    endpoint        ready (said hello), lost (process died / connection closed before Done)
    signalling      dial, offer-sent, offer-received, answer-sent, answer-received,
                    bye-sent, bye-received, hangup (relay)
    ice-gathering   new, gathering, complete                  (RTCIceGatheringState)
    ice-connection  new, checking, completed, failed, closed  (RTCIceConnectionState, as aiortc)
    connection      new, connecting, connected, failed, closed (RTCPeerConnectionState)
    dtls            new, connecting, connected, closed, failed (RTCDtlsTransportState)
    data-channel    open, closed
    media           first-audio-received, first-video-received, stopped
    call            connected, timeout, ended (relay only)

Streams: one entry per endpoint x kind x direction for every enabled kind, in that order
(caller before callee; audio, video, data; send before recv).  ``packets_sent`` and
``packets_received`` always describe the same flow end to end -- the sender's count and the
receiver's count -- whichever endpoint the entry belongs to; ``packets_lost``/``jitter_ms`` are as
the receiver measured them (from the peer's own report, else from RTCP receiver reports).
``bytes`` is RTP payload bytes (media) or message bytes (data) at ``endpoint``.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from testbed.records.json import JsonObject
from testbed.records.timeline import TimelineEntry


class Kind(StrEnum):
    AUDIO = "audio"
    VIDEO = "video"
    DATA = "data"


class Direction(StrEnum):
    SEND = "send"
    RECV = "recv"


def address_family(address: str) -> str | None:
    """``v4``/``v6`` for an IP address literal (zone index allowed), else ``None``."""
    try:
        return f"v{ipaddress.ip_address(address.partition('%')[0]).version}"
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class CandidatePair:
    protocol: str
    local_address: str
    local_port: int
    local_type: str
    remote_address: str
    remote_port: int
    remote_type: str

    @property
    def family(self) -> str | None:
        """``v4`` or ``v6``: the IP version the pair's packets travel over (for a relay
        candidate, between relay and peer), ``None`` for a name (Chromium's mDNS ``*.local``)."""
        return address_family(self.remote_address) or address_family(self.local_address)

    def to_json(self) -> JsonObject:
        return {
            "family": self.family,
            "protocol": self.protocol,
            "local_address": self.local_address,
            "local_port": self.local_port,
            "local_type": self.local_type,
            "remote_address": self.remote_address,
            "remote_port": self.remote_port,
            "remote_type": self.remote_type,
        }


@dataclass(frozen=True, slots=True)
class StreamResult:
    endpoint: str
    kind: Kind
    direction: Direction
    packets_sent: int | None = None
    packets_received: int | None = None
    bytes: int | None = None
    packets_lost: int | None = None
    jitter_ms: float | None = None
    round_trip_time_ms: float | None = None
    ssrc: int | None = None
    codec: str | None = None
    frames: int | None = None
    """Media frames the track produced (send) or the decoder delivered (recv)."""
    messages: int | None = None
    """Data-channel messages sent (send) or received (recv)."""
    latency_ms_median: float | None = None
    """Data channel: one-way delay of received messages (endpoints share CLOCK_MONOTONIC)."""
    latency_ms_max: float | None = None
    first_received_t_s: float | None = None
    """recv: when the first packet/message arrived, in seconds since the call started."""
    last_received_t_s: float | None = None
    """recv: when the last one arrived; well before the hang-up means the flow was cut."""
    max_gap_ms: float | None = None
    """recv: the longest silence between two arrivals (a stall, even if the flow resumed)."""
    received_per_s: tuple[int, ...] | None = None
    """recv: packets (media) or messages (data) that arrived in each second since the call
    started: index 0 is [0 s, 1 s).  Shows when a flow was cut or thinned, and by how much."""
    mos: float | None = None
    """audio recv: E-model MOS of what this endpoint received (see ``quality``)."""
    audio_gap_max_ms: float | None = None
    """audio recv: the longest silence (> 3 packet times) in received audio."""
    audio_gap_total_ms: float | None = None
    """audio recv: total time with no audio to play (silences minus one packet time each)."""
    freeze_count: int | None = None
    """video recv: freezes by the W3C webrtc-stats definition."""
    freeze_total_ms: float | None = None
    throughput_kbps: float | None = None
    """data recv: message bytes received per second of media, in kbit/s."""
    message_loss_pct: float | None = None
    """data recv: messages the peer sent that never arrived, in % of those sent."""
    frames_due: int | None = None
    """send: frames the source's clock made due by hang-up (``frames_due - frames`` were never
    sent: the endpoint fell behind, e.g. starved of CPU)."""

    def to_json(self) -> JsonObject:
        return {
            "endpoint": self.endpoint,
            "kind": self.kind.value,
            "direction": self.direction.value,
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "bytes": self.bytes,
            "packets_lost": self.packets_lost,
            "jitter_ms": self.jitter_ms,
            "round_trip_time_ms": self.round_trip_time_ms,
            "ssrc": self.ssrc,
            "codec": self.codec,
            "frames": self.frames,
            "messages": self.messages,
            "latency_ms_median": self.latency_ms_median,
            "latency_ms_max": self.latency_ms_max,
            "first_received_t_s": self.first_received_t_s,
            "last_received_t_s": self.last_received_t_s,
            "max_gap_ms": self.max_gap_ms,
            "received_per_s": None if self.received_per_s is None else list(self.received_per_s),
            "mos": self.mos,
            "audio_gap_max_ms": self.audio_gap_max_ms,
            "audio_gap_total_ms": self.audio_gap_total_ms,
            "freeze_count": self.freeze_count,
            "freeze_total_ms": self.freeze_total_ms,
            "throughput_kbps": self.throughput_kbps,
            "message_loss_pct": self.message_loss_pct,
            "frames_due": self.frames_due,
        }


@dataclass(frozen=True, slots=True)
class TransportResult:
    """The DTLS transport (all of SRTP, SRTCP and SCTP after BUNDLE) as one endpoint counted it."""

    endpoint: str
    packets_sent: int | None = None
    packets_received: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    ice_role: str | None = None
    dtls_state: str | None = None
    selected_candidate_pair: CandidatePair | None = None

    def to_json(self) -> JsonObject:
        pair = self.selected_candidate_pair
        return {
            "endpoint": self.endpoint,
            "packets_sent": self.packets_sent,
            "packets_received": self.packets_received,
            "bytes_sent": self.bytes_sent,
            "bytes_received": self.bytes_received,
            "ice_role": self.ice_role,
            "dtls_state": self.dtls_state,
            "selected_candidate_pair": pair.to_json() if pair else None,
        }


@dataclass(frozen=True, slots=True)
class CallResult:
    name: str
    connected: bool
    setup_ms: float | None
    state_timeline: tuple[TimelineEntry, ...]
    streams: tuple[StreamResult, ...]
    error: str | None
    selected_candidate_pair: CandidatePair | None = None
    transports: tuple[TransportResult, ...] = ()
    media_s: float | None = None
    wall_s: float | None = None
    # -- added with app profiles, relays and quality (all optional, see the module docstring) --
    spec: str | None = None
    """The ``calls:`` entry this call comes from (``name`` without ``#i``)."""
    instance: int = 1
    start_s: float | None = None
    """When the call was placed, in seconds since the calls phase began."""
    profile: str | None = None
    outcome: str | None = None
    """``ok``, ``degraded`` or ``blocked`` (set by ``run_calls`` from the verdict thresholds)."""
    outcome_reasons: tuple[str, ...] = ()
    time_to_failure_s: float | None = None
    """Connected, then media stopped in both directions for ``dead_after`` s: seconds from
    connected to the start of that silence (or to a failed connection)."""
    recovered: bool | None = None
    """After a failure: media flowed again (by itself or after an ICE restart)."""
    restarts: int = 0
    setup_ice_ms: float | None = None
    """Offer sent -> ICE connected at both endpoints."""
    setup_dtls_ms: float | None = None
    """ICE connected (both) -> DTLS connected (both)."""
    candidate_type: str | None = None
    """``relay`` if either endpoint's selected candidate is a relay, else ``srflx``/``prflx`` if
    either is, else ``host``."""
    candidate_transport: str | None = None
    """For relay: how the relaying endpoint reaches its TURN server (udp, tcp, tls); else the
    pair's protocol."""
    mos: float | None = None
    """The worse endpoint's MOS of received audio over the whole call."""
    mos_r0: float | None = None
    loss_pct: float | None = None
    jitter_ms: float | None = None
    rtt_ms: float | None = None
    quality: dict[str, JsonObject] | None = None
    """Per endpoint: received loss_pct, jitter_ms, rtt_ms, mos, bitrate_kbps, ... over the call."""
    samples: tuple[JsonObject, ...] = ()
    """The per-second timeline (see ``quality.SAMPLE_KEYS``)."""
    silences: dict[str, list[list[float]]] | None = None
    """Per endpoint, ``[start_s, length_s]`` intervals (> 1 s, since the call was placed) in
    which it received nothing at all; what ``time_to_failure_s`` is measured from."""
    engines: dict[str, str] | None = None
    """Which WebRTC stack ran each end: ``{"caller": "aiortc"|"chromium", "callee": ...}``."""
    cpu_s: dict[str, dict[str, float | None]] | None = None
    """Per endpoint that reported it, its process's CPU seconds: ``at_media`` (start-up: when its
    first media frame went out) and ``total`` (at its final report)."""

    @property
    def candidate_family(self) -> str | None:
        """``v4``/``v6``: the IP version of the selected pair (the caller's, else the callee's);
        under ``ip: dual`` it tells which family a call ended up on."""
        pairs = [self.selected_candidate_pair, *(t.selected_candidate_pair for t in self.transports)]
        return next((p.family for p in pairs if p is not None and p.family is not None), None)

    def stream(self, endpoint: str, kind: Kind | str, direction: Direction | str) -> StreamResult:
        """The one stream entry for ``endpoint`` x ``kind`` x ``direction`` (KeyError if absent)."""
        for s in self.streams:
            if s.endpoint == endpoint and s.kind == kind and s.direction == direction:
                return s
        raise KeyError(f"no {endpoint} {kind} {direction} stream in call {self.name!r}")

    def to_json(self) -> JsonObject:
        pair = self.selected_candidate_pair
        return {
            "name": self.name,
            "connected": self.connected,
            "setup_ms": self.setup_ms,
            "media_s": self.media_s,
            "wall_s": self.wall_s,
            "state_timeline": [entry.to_json() for entry in self.state_timeline],
            "streams": [s.to_json() for s in self.streams],
            "transports": [t.to_json() for t in self.transports],
            "selected_candidate_pair": pair.to_json() if pair else None,
            "error": self.error,
            "spec": self.spec if self.spec is not None else self.name,
            "instance": self.instance,
            "start_s": self.start_s,
            "profile": self.profile,
            "outcome": self.outcome,
            "outcome_reasons": list(self.outcome_reasons),
            "time_to_failure_s": self.time_to_failure_s,
            "recovered": self.recovered,
            "restarts": self.restarts,
            "setup_ice_ms": self.setup_ice_ms,
            "setup_dtls_ms": self.setup_dtls_ms,
            "candidate_type": self.candidate_type,
            "candidate_transport": self.candidate_transport,
            "candidate_family": self.candidate_family,
            "mos": self.mos,
            "mos_r0": self.mos_r0,
            "loss_pct": self.loss_pct,
            "jitter_ms": self.jitter_ms,
            "rtt_ms": self.rtt_ms,
            "quality": self.quality,
            "samples": [dict(x) for x in self.samples],
            "silences": self.silences,
            "engines": self.engines,
            "cpu_s": self.cpu_s,
        }
