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

from testbed.calls.quality import FreezeDetector

AUDIO_RATE = 48000
AUDIO_PTIME_S = 0.020  # 20 ms: the WebRTC default Opus packetisation (RFC 7587 section 4.2)
AUDIO_SAMPLES = int(AUDIO_RATE * AUDIO_PTIME_S)
VIDEO_CLOCK = 90000  # RFC 7741: VP8 RTP clock


class _PacedTrack(MediaStreamTrack):
    """Produces frame n at ``start + n * period``; counts what it produced."""

    def __init__(self, period_s: float) -> None:
        super().__init__()
        self._period = period_s
        self._start: float | None = None
        self.frames_sent = 0

    async def _next_slot(self) -> int:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        index = self.frames_sent
        wait = self._start + index * self._period - now
        if wait > 0:
            await asyncio.sleep(wait)
        if self.readyState != "live":
            raise MediaStreamError
        self.frames_sent += 1
        return index


class ToneTrack(_PacedTrack):
    """A sine tone, mono s16 at 48 kHz, in 20 ms frames.

    One second of samples is computed once: any whole number of Hz fits a whole number of periods
    into it, so looping over it is seamless.
    """

    kind = "audio"

    def __init__(self, frequency_hz: int = 440, amplitude: float = 0.25) -> None:
        super().__init__(AUDIO_PTIME_S)
        peak = int(32767 * amplitude)
        second = array.array(
            "h",
            (int(peak * math.sin(2 * math.pi * frequency_hz * i / AUDIO_RATE)) for i in range(AUDIO_RATE)),
        )
        self._second = second.tobytes()
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
    """Consumes a remote track (so decoded frames do not queue up) and counts them."""

    def __init__(self, track: MediaStreamTrack, *, freezes: FreezeDetector | None = None) -> None:
        self.track = track
        self.frames = 0
        self.first_frame = asyncio.Event()
        # Video: W3C freezes, timed when the decoder hands a frame over ("rendered"); shared
        # across an ICE restart, so the gap it causes is a freeze too.
        self.freezes = freezes

    async def run(self) -> None:
        try:
            while True:
                await self.track.recv()
                self.frames += 1
                if self.freezes is not None:
                    self.freezes.add(time.monotonic())
                self.first_frame.set()
        except MediaStreamError:
            return
