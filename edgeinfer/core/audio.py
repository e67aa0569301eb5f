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


# A WAV's header is read before its samples: rates outside what audio hardware records, and
# clips longer than an hour (resampled, they become this many float32 samples), are refused.
MIN_WAV_RATE, MAX_WAV_RATE = 1_000, 768_000
MAX_AUDIO_SECONDS = 3_600


def read_wav(path, rate: int = SAMPLE_RATE) -> np.ndarray:
    """A PCM WAV file as mono float32 at `rate` (channels averaged, resampled if it differs); the
    header's rate, channels and duration are checked before any sample is read."""
    import wave
    from fractions import Fraction

    from edgeinfer.core.errors import InputError

    try:
        with wave.open(str(path), "rb") as w:
            width, channels, file_rate, frames_declared = (
                w.getsampwidth(),
                w.getnchannels(),
                w.getframerate(),
                w.getnframes(),
            )
            if not MIN_WAV_RATE <= file_rate <= MAX_WAV_RATE:
                raise InputError(
                    f"{path} declares a sample rate of {file_rate} Hz; a recording is {MIN_WAV_RATE}-{MAX_WAV_RATE} Hz "
                    "(convert it, e.g. ffmpeg -i IN -ar 16000 OUT.wav)"
                )
            if not 1 <= channels <= 64:
                raise InputError(f"{path} declares {channels} channels; a recording has 1 to 64")
            if frames_declared / file_rate > MAX_AUDIO_SECONDS:
                raise InputError(
                    f"{path} is {frames_declared / file_rate:,.0f} s long; edgeinfer reads at most "
                    f"{MAX_AUDIO_SECONDS} s of audio per file (split it)"
                )
            frames = w.readframes(frames_declared)
    except (wave.Error, EOFError) as e:
        raise InputError(f"{path} is not a PCM WAV file ({e}); convert it, e.g. ffmpeg -i IN -ar 16000 OUT.wav") from e
    except OSError as e:
        raise InputError(f"{path} cannot be read: {e.strerror or e}") from e
    if width not in (1, 2, 4):
        raise InputError(f"{path} has {8 * width}-bit samples; use 8-, 16- or 32-bit PCM")
    dtype = {1: np.uint8, 2: np.int16, 4: np.int32}[width]
    usable = len(frames) // (width * channels) * width * channels
    data = np.frombuffer(frames[:usable], dtype=dtype).astype(np.float32)
    if width == 1:
        data -= 128
    data /= float(2 ** (8 * width - 1))
    data = data.reshape(-1, channels).mean(axis=1)
    if data.size == 0:
        raise InputError(f"{path} holds no audio samples")
    if file_rate != rate:
        from scipy.signal import resample_poly

        ratio = Fraction(rate, file_rate).limit_denominator(1000)
        data = resample_poly(data, ratio.numerator, ratio.denominator).astype(np.float32)
    return data
