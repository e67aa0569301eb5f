"""Audio as data: synthetic speech-like clips for export checks and comparisons, and PCM WAV reading.

No speech corpus ships with edgeinfer (and none may be downloaded in tests), so these clips are
voiced-sound imitations: a fundamental with harmonics under formant-like peaks, gliding pitch,
syllable-rate amplitude envelopes and a little noise. A model's tokens on them are what the
exported graphs are held to against the original model and against each other.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16_000


def synthetic_clips(n: int, seconds: float = 1.0, rate: int = SAMPLE_RATE, seed: int = 0) -> list[np.ndarray]:
    """`n` different mono float32 clips in [-1, 1]."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    clips = []
    for _ in range(n):
        f0 = rng.uniform(90, 240) * (1 + rng.uniform(-0.2, 0.2) * t / seconds)  # gliding pitch
        phase = 2 * np.pi * np.cumsum(f0) / rate
        formants = rng.uniform([300, 900, 2200], [900, 2200, 3200])
        voice = np.zeros_like(t)
        for k in range(1, 30):
            freq = k * f0.mean()
            gain = sum(np.exp(-(((freq - f) / 150.0) ** 2)) for f in formants) + 0.02
            voice += gain / k * np.sin(k * phase)
        syllables = rng.uniform(3, 6)
        envelope = np.clip(np.sin(np.pi * syllables * t + rng.uniform(0, np.pi)), 0, None) ** 2
        clip = envelope * voice + 0.01 * rng.standard_normal(t.shape)
        clips.append((0.5 * clip / np.abs(clip).max()).astype(np.float32))
    return clips


def read_wav(path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A PCM WAV file as mono float32 at `rate` (channels averaged, resampled if it differs)."""
    import wave
    from fractions import Fraction

    from edgeinfer.core.errors import InputError

    try:
        with wave.open(str(path), "rb") as w:
            width, channels, file_rate = w.getsampwidth(), w.getnchannels(), w.getframerate()
            frames = w.readframes(w.getnframes())
    except (wave.Error, EOFError) as e:
        raise InputError(f"{path} is not a PCM WAV file ({e}); convert it, e.g. ffmpeg -i IN -ar 16000 OUT.wav") from e
    if width not in (1, 2, 4):
        raise InputError(f"{path} has {8 * width}-bit samples; use 8-, 16- or 32-bit PCM")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    data = np.frombuffer(frames, dtype=dtype).astype(np.float32)
    if width == 1:
        data -= 128
    data /= float(2 ** (8 * width - 1))
    data = data.reshape(-1, channels).mean(axis=1)
    if file_rate != rate:
        from scipy.signal import resample_poly

        ratio = Fraction(rate, file_rate).limit_denominator(1000)
        data = resample_poly(data, ratio.numerator, ratio.denominator).astype(np.float32)
    return data
