"""Pre-encoded Opus for the synthetic tone: encode each frame once per encoder setting, reuse it.

Runs inside endpoint processes only (it imports av and aiortc).  A live encoder costs an aiortc
endpoint, per 20 ms frame, a hop to an executor thread, a resampler pass, an Opus encode and
aiortc's pure-Python RFC 6465 audio level (a loop over 960 samples): about half of what a
two-way audio call costs in steady state.  The tone repeats exactly, so its Opus packets can be
computed once and replayed:

* :func:`encode_tone` feeds the same 20 ms mono frames that ``media.ToneTrack`` produces through
  the same resampler and a libopus context opened exactly as ``aiortc_glue.AppOpusEncoder`` opens
  one (aiortc's own encoder is the case 96 kbit/s, 20 ms, no FEC).  A fresh encoder's first
  packets differ (it has no history yet), so it keeps two stretches: ``warmup``, the packets of
  the first cycle, and ``loop``, the packets of the second, which are then repeated.  A cycle is
  a whole number of packets *and* of tone periods (the tone's one-second table), so the loop is
  seamless.  The censor sees what a live encoder at that setting sends: real Opus payloads with
  their sizes, RTP timestamps and audio-level extensions; only the loop's packets repeat bit for
  bit, where a live encoder's would differ by a few bytes.
* :class:`ToneCache` keeps the encoded tones of the last few settings: an adapting call changes
  its bitrate about once a second, and a change is one :func:`encode_tone` (a fresh encoder, as
  ``AppOpusEncoder`` opens a fresh codec context on a change: the packets after it start with
  the warm-up again).  :meth:`EncodedTone.packet` gives packet *n* since that encoder opened.
"""

from __future__ import annotations

import fractions
import math
from collections import OrderedDict
from dataclasses import dataclass

import av
from aiortc.rtp import compute_audio_level_dbov

from testbed.calls.aiortc_glue import open_opus_encoder

__all__ = ["EncodedTone", "OpusSetting", "ToneCache", "cycle_packets", "encode_tone"]

RATE = 48000
INPUT_MS = 20  # media.ToneTrack's frames, what a live encoder is fed
CACHE_SETTINGS = 16


@dataclass(frozen=True, slots=True)
class OpusSetting:
    """What a libopus encoder is opened with (``aiortc_glue.open_opus_encoder``)."""

    bitrate_bps: int
    frame_ms: int
    fec: bool


@dataclass(frozen=True, slots=True)
class EncodedTone:
    """One setting's packets: ``warmup`` once after the encoder opens, then ``loop`` forever.
    ``levels[i]`` is the RFC 6465 audio level (as aiortc computes it, -127..0 dBov) of the 20 ms
    input frame that completed packet ``i`` of a cycle (the frame aiortc would measure)."""

    setting: OpusSetting
    warmup: tuple[bytes, ...]
    loop: tuple[bytes, ...]
    levels: tuple[int, ...]

    def packet(self, n: int) -> tuple[bytes, int]:
        """Packet ``n`` (0-based since the encoder opened) and its audio level."""
        cycle = len(self.loop)
        payload = self.warmup[n] if n < len(self.warmup) else self.loop[(n - len(self.warmup)) % cycle]
        return payload, self.levels[n % cycle]


def cycle_packets(frame_ms: int, tone_period_ms: int = 1000) -> int:
    """Packets in the shortest stretch that is whole packets and whole tone tables (1 s)."""
    return math.lcm(frame_ms, tone_period_ms) // frame_ms


def encode_tone(second: bytes, setting: OpusSetting) -> EncodedTone:
    """Encode two cycles of the looping mono s16 48 kHz tone table ``second`` (one second)."""
    if len(second) != RATE * 2:
        raise ValueError(f"the tone table is one second of mono s16 at {RATE} Hz, got {len(second)} bytes")
    cycle = cycle_packets(setting.frame_ms)
    codec = open_opus_encoder(setting.bitrate_bps, setting.frame_ms, setting.fec)
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=RATE, frame_size=RATE * setting.frame_ms // 1000)
    chunk = RATE * INPUT_MS // 1000 * 2
    packets: list[bytes] = []
    levels: list[int] = []
    index = 0
    while len(packets) < 2 * cycle:
        offset = (index * chunk) % len(second)
        frame = av.AudioFrame(format="s16", layout="mono", samples=chunk // 2)
        frame.planes[0].update(second[offset : offset + chunk])
        frame.pts = index * (chunk // 2)
        frame.sample_rate = RATE
        frame.time_base = fractions.Fraction(1, RATE)
        index += 1
        out = [bytes(p) for resampled in resampler.resample(frame) for p in codec.encode(resampled)]
        if out and len(levels) < cycle:
            # Constant per position in the cycle: the input repeats with it.
            levels.extend([compute_audio_level_dbov(frame)] * len(out))
        packets.extend(out)
    return EncodedTone(
        setting=setting,
        warmup=tuple(packets[:cycle]),
        loop=tuple(packets[cycle : 2 * cycle]),
        levels=tuple(levels[:cycle]),
    )


class ToneCache:
    """The encoded tone of the last ``size`` settings used (least recently used goes first)."""

    def __init__(self, second: bytes, size: int = CACHE_SETTINGS) -> None:
        self._second = second
        self._size = size
        self._tones: OrderedDict[OpusSetting, EncodedTone] = OrderedDict()
        self.encodes = 0
        """How many times a setting was encoded (a test and the docs read it)."""

    def get(self, setting: OpusSetting) -> EncodedTone:
        tone = self._tones.get(setting)
        if tone is None:
            tone = encode_tone(self._second, setting)
            self.encodes += 1
            self._tones[setting] = tone
            if len(self._tones) > self._size:
                self._tones.popitem(last=False)
        else:
            self._tones.move_to_end(setting)
        return tone
