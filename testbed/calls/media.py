"""Synthetic media for the endpoints: a paced Opus-ready tone and paced VP8-ready video frames.

Runs inside endpoint processes only (it imports av and aiortc).  Pacing follows aiortc's own
``AudioStreamTrack``: frame *n* is due at ``start + n * ptime``, so a late frame does not shift the
ones after it.  The clock is ``time.monotonic`` (aiortc uses wall time, which NTP may step).
"""

from __future__ import annotations

import array
import asyncio
import fractions
import math
import random
import time

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from testbed.calls.aiortc_glue import EncodedAudio
from testbed.calls.opus_cache import OpusSetting, ToneCache
from testbed.calls.quality import FreezeDetector

AUDIO_RATE = 48000
AUDIO_PTIME_S = 0.020  # 20 ms: the WebRTC default Opus packetisation (RFC 7587 section 4.2)
AUDIO_SAMPLES = int(AUDIO_RATE * AUDIO_PTIME_S)
VIDEO_CLOCK = 90000  # RFC 7741: VP8 RTP clock


class _PacedTrack(MediaStreamTrack):
    """Produces slot n at ``start + offset + n * period``; counts what it produced and what was
    due (``frames_*`` count ``frames_per_slot`` frames per slot: 20 ms audio frames, whatever the
    packet time)."""

    def __init__(self, period_s: float, *, offset_s: float = 0.0, frames_per_slot: int = 1) -> None:
        super().__init__()
        self._period = period_s
        self._offset = offset_s
        self._frames_per_slot = frames_per_slot
        self._start: float | None = None
        self._stopped_at: float | None = None
        self._slots = 0
        self.first_cpu_s: float | None = None
        """The process's CPU time when this track's first frame went out (the start-up cost)."""

    @property
    def frames_sent(self) -> int:
        return self._slots * self._frames_per_slot

    def frames_due(self, now: float | None = None) -> int:
        """Frames whose time had come by ``now`` (or when the track stopped): frames_due -
        frames_sent is what the endpoint fell behind by (CPU starvation), never sent."""
        if self._start is None:
            return 0
        end = self._stopped_at if self._stopped_at is not None else (time.monotonic() if now is None else now)
        slots = math.floor((end - self._start - self._offset) / self._period) + 1
        return max(slots, self._slots) * self._frames_per_slot

    def stop(self) -> None:
        if self._stopped_at is None and self._start is not None:
            self._stopped_at = time.monotonic()
        super().stop()

    async def _next_slot(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
            self.first_cpu_s = time.process_time()
        index = self._slots
        wait = self._start + self._offset + index * self._period - now
        if wait > 0:
            await asyncio.sleep(wait)
        if self.readyState != "live":
            raise MediaStreamError
        self._slots += 1
        return index


def tone_second(frequency_hz: int, amplitude: float = 0.25) -> bytes:
    """One second of a sine tone, mono s16 at 48 kHz: any whole number of Hz fits a whole number
    of periods into it, so looping over it is seamless."""
    peak = int(32767 * amplitude)
    return array.array(
        "h",
        (int(peak * math.sin(2 * math.pi * frequency_hz * i / AUDIO_RATE)) for i in range(AUDIO_RATE)),
    ).tobytes()


class ToneTrack(_PacedTrack):
    """A sine tone, mono s16 at 48 kHz, in 20 ms frames, encoded live by aiortc (any codec).
    Opus calls use :class:`OpusToneTrack`, the same tone encoded once."""

    kind = "audio"

    def __init__(self, frequency_hz: int = 440, amplitude: float = 0.25) -> None:
        super().__init__(AUDIO_PTIME_S)
        self._second = tone_second(frequency_hz, amplitude)
        self._frame_bytes = AUDIO_SAMPLES * 2

    async def recv(self) -> av.AudioFrame:
        index = await self._next_slot()
        offset = (index * self._frame_bytes) % len(self._second)
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(self._second[offset : offset + self._frame_bytes])
        frame.pts = index * AUDIO_SAMPLES
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        return frame


class OpusToneTrack(_PacedTrack):
    """The :class:`ToneTrack` tone as ready Opus packets from an ``opus_cache.ToneCache``, read
    by the sender through ``aiortc_glue.install_pre_encoded`` (:meth:`next_encoded`), not
    :meth:`recv`.

    Packets go out when a live encoder's would: one per packet time, the first once the 20 ms
    frame that completes it is due (a 60 ms packet 40 ms after media starts); below 20 ms, the
    packets of one 20 ms frame together, with that frame's RTP timestamp, as aiortc sends them.
    :meth:`set_bitrate` switches to another setting's packets at the next packet, starting with
    that encoder's warm-up (``AppOpusEncoder`` opens a fresh codec context on a change)."""

    kind = "audio"

    def __init__(self, cache: ToneCache, setting: OpusSetting) -> None:
        slot_ms = max(setting.frame_ms, 20)
        super().__init__(slot_ms / 1000, offset_s=(slot_ms - 20) / 1000, frames_per_slot=slot_ms // 20)
        self._cache = cache
        self._setting = setting
        self._tone = cache.get(setting)
        self._packets_per_slot = slot_ms // setting.frame_ms
        self._timestamp_step = AUDIO_RATE * slot_ms // 1000
        self._since_open = 0  # packets since the current setting's encoder "opened"
        self._wanted = setting.bitrate_bps

    @property
    def bitrate_bps(self) -> int:
        return self._setting.bitrate_bps

    def set_bitrate(self, bitrate_bps: int) -> None:
        """Called from the event loop (the bitrate controller): takes effect at the next packet."""
        self._wanted = bitrate_bps

    async def next_encoded(self) -> EncodedAudio:
        slot = await self._next_slot()
        if self._wanted != self._setting.bitrate_bps:
            self._setting = OpusSetting(self._wanted, self._setting.frame_ms, self._setting.fec)
            self._tone = self._cache.get(self._setting)
            self._since_open = 0
        payloads: list[bytes] = []
        level = 0
        for n in range(self._since_open, self._since_open + self._packets_per_slot):
            payload, level = self._tone.packet(n)
            payloads.append(payload)
        self._since_open += self._packets_per_slot
        return EncodedAudio(tuple(payloads), slot * self._timestamp_step, level)

    async def recv(self) -> av.AudioFrame:
        raise MediaStreamError("OpusToneTrack is read through aiortc_glue.install_pre_encoded")


class MovingBarTrack(_PacedTrack):
    """Grey noise (top half) and a white vertical bar moving one step per frame (YUV 4:2:0).

    A still or flat picture compresses to ~60 bytes per VP8 frame, which looks nothing like a
    video call on the wire; fresh noise in every frame keeps the encoder at its target bitrate
    (aiortc's VP8 default, 500 kbit/s, adapted by REMB) as a camera would.  The noise comes from
    a seeded generator, so runs are reproducible.
    """

    kind = "video"

    def __init__(self, width: int, height: int, fps: int, *, seed: int = 0) -> None:
        super().__init__(1.0 / fps)
        self._width, self._height, self._fps = width, height, fps
        self._bar = max(2, width // 16)
        self._random = random.Random(seed)

    async def recv(self) -> av.VideoFrame:
        index = await self._next_slot()
        frame = av.VideoFrame(self._width, self._height, "yuv420p")
        luma, cb, cr = frame.planes
        # Noise in the top half only: about 1 Mbit/s at 320x240/15 fps, a typical call's rate.
        noisy = (luma.height // 2) * luma.line_size
        pixels = bytearray(self._random.randbytes(noisy) + b"\x50" * (luma.buffer_size - noisy))
        x0 = (index * 4) % self._width
        bar = b"\xeb" * (min(x0 + self._bar, self._width) - x0)
        for row in range(0, luma.buffer_size, luma.line_size):
            pixels[row + x0 : row + x0 + len(bar)] = bar
        luma.update(bytes(pixels))
        cb.update(b"\x80" * cb.buffer_size)
        cr.update(b"\x80" * cr.buffer_size)
        frame.pts = index * VIDEO_CLOCK // self._fps
        frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        return frame


class FrameSink:
    """Consumes a remote track (so decoded frames do not queue up) and counts them.

    Audio is not decoded (``aiortc_glue.count_instead_of_decoding`` calls :meth:`count` per
    reassembled frame); the track then only carries its end, which ends :meth:`run`."""

    def __init__(self, track: MediaStreamTrack, *, freezes: FreezeDetector | None = None) -> None:
        self.track = track
        self.frames = 0
        self.first_frame = asyncio.Event()
        # Video: W3C freezes, timed when the decoder hands a frame over ("rendered"); shared
        # across an ICE restart, so the gap it causes is a freeze too.
        self.freezes = freezes

    def count(self) -> None:
        self.frames += 1
        if self.freezes is not None:
            self.freezes.add(time.monotonic())
        self.first_frame.set()

    async def run(self) -> None:
        try:
            while True:
                await self.track.recv()
                self.count()
        except MediaStreamError:
            return
