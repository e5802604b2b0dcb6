"""Spoken digits from espeak-ng: each distinct (word, voice, speed, pitch) is synthesized once, then every
row gets its own placement, babble / white noise at a drawn SNR, and loudness."""

from __future__ import annotations

import numpy as np

from mumo.data.speech import (  # noqa: F401  (re-exported: the suite's datasets and tests use them)
    SAMPLE_RATE,
    Voice,
    draw_voice,
    espeak_available,
    write_wav,
)
from mumo.data.speech import (
    Speaker as _Speaker,
)

CLIP_SECONDS = 1.0  # espeak's longest digit (trimmed) is 0.88 s at 120 wpm
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SNR_DB = (-6.0, 6.0)
# Talkers of the babble: words that rhyme with no digit, so the noise never says a label.
BABBLE_WORDS = ("hello", "water", "table", "window", "garden", "morning", "paper", "coffee", "river")
BABBLE_TALKERS = 6


# A fixed crowd (9 words x 6 voices = 54 clips to synthesize) keeps babble cheap.
BABBLE_VOICES = tuple(draw_voice(np.random.default_rng([99, i])) for i in range(6))


class Speaker(_Speaker):
    """mumo.data.speech.Speaker, plus babble noise and the noisy spoken digits of the suite."""

    def babble(self, rng: np.random.Generator, length: int) -> np.ndarray:
        """(length,) several talkers saying non-digit words at random offsets and levels."""
        mix = np.zeros(length, np.float32)
        for _ in range(BABBLE_TALKERS):
            word = BABBLE_WORDS[rng.integers(len(BABBLE_WORDS))]
            voice = BABBLE_VOICES[rng.integers(len(BABBLE_VOICES))]
            clip = self.say(word, voice) * rng.uniform(0.5, 1.0)
            start = int(rng.integers(-len(clip) // 2, length))  # may start before the clip and be cut
            lo, hi = max(start, 0), min(start + len(clip), length)
            if hi > lo:
                mix[lo:hi] += clip[lo - start : hi - start]
        return mix

    def noisy_digit(self, digit: int, rng: np.random.Generator) -> np.ndarray:
        """(CLIP_SECONDS * 16000,) float32: the digit in a random voice at a random place, plus white
        noise, babble or both at an SNR drawn from SNR_DB (speech power over its own samples)."""
        length = round(CLIP_SECONDS * SAMPLE_RATE)
        speech = self.say(DIGIT_WORDS[digit], draw_voice(rng))[:length]
        start = int(rng.integers(0, length - len(speech) + 1))
        clean = np.zeros(length, np.float32)
        clean[start : start + len(speech)] = speech
        kind = ("white", "babble", "both")[rng.integers(3)]
        noise = np.zeros(length, np.float32)
        if kind in ("white", "both"):
            noise += rng.standard_normal(length).astype(np.float32)
        if kind in ("babble", "both"):
            babble = self.babble(rng, length)
            noise += babble / max(float(np.sqrt(np.mean(babble**2))), 1e-8)
        snr_db = rng.uniform(*SNR_DB)
        speech_power = float(np.mean(speech**2))
        noise *= np.sqrt(speech_power / 10 ** (snr_db / 10) / max(float(np.mean(noise**2)), 1e-12))
        mix = clean + noise
        return (mix * rng.uniform(0.3, 0.9) / np.abs(mix).max()).astype(np.float32)
