"""A speech-like WAV for Chromium's fake microphone (``--use-file-for-fake-audio-capture``).

Chromium's default fake microphone is a beep once a second; a codec and its DTX treat that very
differently from a voice.  This file is a stand-in for speech, made deterministically with the
standard library only: a voiced source (a 110-220 Hz glottal pulse train with a slowly moving
pitch, harmonics falling off at -12 dB/octave) shaped by syllable envelopes of ~200 ms at ~4
syllables/s (the syllable rate of conversational speech), in phrases of 1-2.5 s separated by
0.3-0.8 s pauses, as in turn-taking speech.  Opus sees voiced frames, onsets and silences.
"""

from __future__ import annotations

import array
import math
import os
import random
import wave
from pathlib import Path

SAMPLE_RATE = 16000
SECONDS = 12.0  # Chromium loops the file
SEED = 10  # the file is the same in every run


def speech_like_samples(seconds: float = SECONDS, rate: int = SAMPLE_RATE, seed: int = SEED) -> array.array[int]:
    rng = random.Random(seed)
    n = int(seconds * rate)
    out = array.array("h", bytes(2 * n))
    t = 0
    while t < n:
        phrase = int(rng.uniform(1.0, 2.5) * rate)
        f0 = rng.uniform(110.0, 220.0)
        phase = 0.0
        for i in range(min(phrase, n - t)):
            time_s = i / rate
            # Syllables: a raised-cosine envelope at ~4 Hz with some syllables dropped.
            syllable = 0.5 - 0.5 * math.cos(2 * math.pi * 4.0 * time_s)
            pitch = f0 * (1.0 + 0.08 * math.sin(2 * math.pi * 0.7 * time_s))
            phase += pitch / rate
            value = 0.0
            for h in range(1, 12):
                value += math.sin(2 * math.pi * h * phase) / (h * h) ** 0.5 / h
            out[t + i] = int(max(-1.0, min(1.0, 0.45 * syllable * value)) * 32767)
        t += phrase + int(rng.uniform(0.3, 0.8) * rate)
    return out


def write_speech_wav(path: Path) -> Path:
    """Write the file once (atomically: concurrent endpoints may ask for it at the same time)."""
    if path.exists():
        return path
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(speech_like_samples().tobytes())
    os.replace(tmp, path)
    return path
