"""The pre-encoded tone (calls/opus_cache.py, media.OpusToneTrack): the same packets a live encoder
sends, encoded once per setting, and the frames-due count that makes "unsent" measurable."""

from __future__ import annotations

import asyncio
import fractions

import av
import pytest
from aiortc.rtp import compute_audio_level_dbov

from testbed.calls.aiortc_glue import AppOpusEncoder
from testbed.calls.media import AUDIO_RATE, AUDIO_SAMPLES, OpusToneTrack, tone_second
from testbed.calls.opus_cache import OpusSetting, ToneCache, cycle_packets, encode_tone

SECOND = tone_second(440)


def _live_packets(setting: OpusSetting, frames: int) -> tuple[list[bytes], list[int]]:
    """What aiortc sends with a live AppOpusEncoder fed ToneTrack's 20 ms frames."""
    encoder = AppOpusEncoder(setting.bitrate_bps, setting.frame_ms, setting.fec)
    payloads: list[bytes] = []
    levels: list[int] = []
    for index in range(frames):
        offset = (index * AUDIO_SAMPLES * 2) % len(SECOND)
        frame = av.AudioFrame(format="s16", layout="mono", samples=AUDIO_SAMPLES)
        frame.planes[0].update(SECOND[offset : offset + AUDIO_SAMPLES * 2])
        frame.pts = index * AUDIO_SAMPLES
        frame.sample_rate = AUDIO_RATE
        frame.time_base = fractions.Fraction(1, AUDIO_RATE)
        out, _ = encoder.encode(frame)
        payloads += out
        levels += [compute_audio_level_dbov(frame)] * len(out)
    return payloads, levels


def test_cycle_is_whole_packets_and_whole_seconds() -> None:
    assert [cycle_packets(ms) for ms in (10, 20, 40, 60)] == [100, 50, 25, 50]


@pytest.mark.parametrize("setting", [OpusSetting(96000, 20, False), OpusSetting(24000, 60, True)])
def test_warmup_is_bit_for_bit_what_a_live_encoder_sends(setting: OpusSetting) -> None:
    tone = encode_tone(SECOND, setting)
    cycle = cycle_packets(setting.frame_ms)
    live, levels = _live_packets(setting, cycle * setting.frame_ms // 20)
    assert len(tone.warmup) == len(tone.loop) == cycle
    assert list(tone.warmup) == live[:cycle]
    assert [tone.packet(n)[1] for n in range(cycle)] == levels[:cycle]


def test_loop_packets_have_the_live_encoders_sizes() -> None:
    setting = OpusSetting(32000, 20, False)
    tone = encode_tone(SECOND, setting)
    live, _ = _live_packets(setting, 2 * cycle_packets(20))
    # Past the warm-up a live encoder's packets are the loop's (within a few bytes each).
    assert sum(len(p) for p in tone.loop) == pytest.approx(sum(len(p) for p in live[50:100]), rel=0.05)
    assert tone.packet(50) == (tone.loop[0], tone.levels[0])
    assert tone.packet(50 + 2 * 50 + 3)[0] == tone.loop[3]


def test_bitrate_sets_packet_size() -> None:
    low, high = (encode_tone(SECOND, OpusSetting(rate, 20, False)) for rate in (12000, 64000))
    assert sum(map(len, low.loop)) < sum(map(len, high.loop)) / 2


def test_cache_encodes_each_setting_once_and_evicts_the_oldest() -> None:
    cache = ToneCache(SECOND, size=2)
    a, b, c = (OpusSetting(rate, 20, False) for rate in (16000, 20000, 24000))
    first = cache.get(a)
    assert cache.get(a) is first and cache.encodes == 1
    cache.get(b)
    cache.get(a)  # a is now the most recent: b goes first
    cache.get(c)
    assert cache.encodes == 3
    cache.get(a)
    assert cache.encodes == 3
    cache.get(b)
    assert cache.encodes == 4


def test_track_sends_cached_packets_and_restarts_warmup_on_a_bitrate_change() -> None:
    async def scenario() -> None:
        cache = ToneCache(SECOND)
        track = OpusToneTrack(cache, OpusSetting(24000, 10, False))
        frames = [await track.next_encoded() for _ in range(3)]
        tone = cache.get(OpusSetting(24000, 10, False))
        # 10 ms packets: two per 20 ms frame, with that frame's timestamp (as aiortc sends them).
        assert [f.payloads for f in frames] == [tone.warmup[0:2], tone.warmup[2:4], tone.warmup[4:6]]
        assert [f.timestamp for f in frames] == [0, 960, 1920]
        track.set_bitrate(32000)
        after = await track.next_encoded()
        assert after.payloads == cache.get(OpusSetting(32000, 10, False)).warmup[0:2]
        assert after.timestamp == 2880 and track.bitrate_bps == 32000
        assert track.frames_sent == 4 and cache.encodes == 2
        track.stop()
        assert track.frames_due() >= track.frames_sent

    asyncio.run(scenario())


def test_frames_due_counts_what_a_late_sender_never_sent() -> None:
    async def scenario() -> None:
        track = OpusToneTrack(ToneCache(SECOND), OpusSetting(96000, 60, False))
        assert track.frames_due() == 0  # not started: nothing owed
        await track.next_encoded()
        await asyncio.sleep(0.5)  # the sender stalls (a starved endpoint): no packet for 0.5 s
        track.stop()
        # One 60 ms packet (3 frames of 20 ms) went out; by 0.5 s at least 8 packets were due.
        assert track.frames_sent == 3
        assert track.frames_due() >= 24

    asyncio.run(scenario())
