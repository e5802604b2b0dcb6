"""Speech synthesized offline with espeak-ng (Debian: apt-get install -y espeak-ng): several voices,
speeds and pitches. builtin:shapes-speech and the quality suite's spoken digits are made with it."""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np
import soundfile as sf
import torch

from mumo.errors import MumoError
from mumo.modalities.audio import resample

SAMPLE_RATE = 16_000
VOICES = ("en", "en-us", "en-gb-scotland", "en-029", "en-gb-x-rp", "en-us-nyc")
VARIANTS = ("", "+m3", "+f2", "+m7", "+f4")
SPEEDS = (120, 140, 160, 180, 200, 220)  # words per minute
PITCHES = (20, 35, 50, 65, 80)  # espeak's 0..99 pitch scale


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


@dataclass(frozen=True)
class Voice:
    """One espeak-ng rendering setting: the same text in the same Voice is the same clean waveform."""

    name: str  # e.g. "en-gb-scotland+f2"
    speed: int
    pitch: int


def draw_voice(
    rng: np.random.Generator,
    voices: tuple[str, ...] = VOICES,
    speeds: tuple[int, ...] = SPEEDS,
    pitches: tuple[int, ...] = PITCHES,
) -> Voice:
    name = voices[rng.integers(len(voices))] + VARIANTS[rng.integers(len(VARIANTS))]
    return Voice(name, int(speeds[rng.integers(len(speeds))]), int(pitches[rng.integers(len(pitches))]))


class Speaker:
    """espeak-ng with an in-memory cache of clean, trimmed, 16 kHz clips (one per build, so two builds
    with the same seed each synthesize from scratch and can be compared)."""

    def __init__(self) -> None:
        if not espeak_available():
            raise MumoError("espeak-ng is not installed; install it with: apt-get install -y espeak-ng")
        self._clips: dict[tuple[str, Voice], np.ndarray] = {}

    def say(self, text: str, voice: Voice) -> np.ndarray:
        """(S,) float32 samples at 16 kHz, leading and trailing silence cut."""
        key = (text, voice)
        if key not in self._clips:
            command = ["espeak-ng", "-v", voice.name, "-s", str(voice.speed), "-p", str(voice.pitch)]
            wav = subprocess.run([*command, "--stdout", text], capture_output=True, check=True).stdout
            samples, rate = sf.read(io.BytesIO(wav), dtype="float32", always_2d=True)
            # zero-padded to whole half seconds: a few input lengths, so torch reuses its conv plans
            padded = np.zeros(-(-len(samples) // (rate // 2)) * (rate // 2), np.float32)
            padded[: len(samples)] = samples[:, 0]
            wave = resample(torch.from_numpy(padded), rate, SAMPLE_RATE).numpy()
            loud = np.flatnonzero(np.abs(wave) > 0.02 * np.abs(wave).max())
            self._clips[key] = wave[loud[0] : loud[-1] + 1].astype(np.float32)
        return self._clips[key]


def write_wav(path: str, wave: np.ndarray) -> None:
    """16-bit PCM mono at 16 kHz: the same samples give the same bytes."""
    sf.write(path, wave, SAMPLE_RATE, subtype="PCM_16", format="WAV")


__all__ = [
    "PITCHES",
    "SAMPLE_RATE",
    "SPEEDS",
    "VARIANTS",
    "VOICES",
    "Speaker",
    "Voice",
    "draw_voice",
    "espeak_available",
    "write_wav",
]
