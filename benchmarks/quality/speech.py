"""Spoken digits from espeak-ng: each distinct (word, voice, speed, pitch) is synthesized once, then every
row gets its own placement, babble / white noise at a drawn SNR, and loudness."""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from mumo.modalities.audio import resample

SAMPLE_RATE = 16_000
CLIP_SECONDS = 1.0  # espeak's longest digit (trimmed) is 0.88 s at 120 wpm
DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOICES = ("en", "en-us", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc")
VARIANTS = ("", "+m3", "+f2", "+m7", "+f4")
SPEEDS = (120, 140, 160, 180, 200, 220)  # words per minute
PITCHES = (20, 35, 50, 65, 80)  # espeak's 0..99 pitch scale
SNR_DB = (-6.0, 6.0)
# Talkers of the babble: words that rhyme with no digit, so the noise never says a label.
BABBLE_WORDS = ("hello", "water", "table", "window", "garden", "morning", "paper", "coffee", "river")
BABBLE_TALKERS = 6


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


@dataclass(frozen=True)
class Voice:
    """One espeak-ng rendering setting: the same word in the same Voice is the same clean waveform."""

    name: str  # e.g. "en-gb-scotland+f2"
    speed: int
    pitch: int


def draw_voice(rng: np.random.Generator) -> Voice:
    name = VOICES[rng.integers(len(VOICES))] + VARIANTS[rng.integers(len(VARIANTS))]
    return Voice(name, int(SPEEDS[rng.integers(len(SPEEDS))]), int(PITCHES[rng.integers(len(PITCHES))]))


# A fixed crowd (9 words x 6 voices = 54 clips to synthesize) keeps babble cheap.
BABBLE_VOICES = tuple(draw_voice(np.random.default_rng([99, i])) for i in range(6))


class Speaker:
    """espeak-ng with an in-memory cache of clean, trimmed, 16 kHz clips (one per build, so two builds
    with the same seed each synthesize from scratch and can be compared)."""

    def __init__(self) -> None:
        if not espeak_available():
            raise RuntimeError("espeak-ng is not installed; install it with: apt-get install -y espeak-ng")
        self._clips: dict[tuple[str, Voice], np.ndarray] = {}

    def say(self, word: str, voice: Voice) -> np.ndarray:
        """(S,) float32 samples at 16 kHz, leading and trailing silence cut."""
        key = (word, voice)
        if key not in self._clips:
            command = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch)]
            wav = subprocess.run([*command, "--stdout", word], capture_output=True, check=True).stdout
            samples, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
            # zero-padded to whole half seconds: a few input lengths, so torch reuses its conv plans
            padded = np.zeros(-(-len(samples) // (rate // 2)) * (rate // 2), np.float32)
            padded[: len(samples)] = samples[:, 0]
            wave = resample(torch.from_numpy(padded), rate, SAMPLE_RATE).numpy()
            loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
            self._clips[key] = wave[loud[0] : loud[-1] + 1].astype(np.float32)
        return self._clips[key]

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


def write_wav(path: str, wave: np.ndarray) -> None:
    """16-bit PCM mono at 16 kHz: the same samples give the same bytes."""
    sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")
