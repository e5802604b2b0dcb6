"""What builtin:shapes' task variants add to its rows: a question and its answer (shapes-qa), a spoken
transcript (shapes-speech), and the colour-shape pairs shapes-draw keeps out of training."""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from mumo.data.shapes import COLORS, ShapeItem, _pick, caption_for

# builtin:shapes-draw: colour-shape pairs train and val never show (test has them: can the model compose?)
HELD_OUT_COMBOS = (("red", "triangle"), ("blue", "cross"), ("green", "circle"), ("yellow", "square"))
# builtin:shapes-speech: half of the test rows are spoken by this voice, which train and val never hear.
HELD_OUT_VOICE = "en-us-nyc"


def _position_answer(item: ShapeItem) -> str:
    if item.row == "middle" and item.col == "center":
        return "center"
    return f"{item.row} {item.col}"


def question_for(item: ShapeItem, rng: np.random.Generator) -> tuple[str, str]:
    """A question about the image and its short answer: colour, shape, size, position, background, or a
    yes/no question about the colour (half of them true)."""
    kind = int(rng.integers(6))
    if kind == 0:
        return _pick(
            rng, (f"what colour is the {item.shape}?", "what color is the shape?", "which colour is it?")
        ), item.color
    if kind == 1:
        return _pick(
            rng, ("what shape is it?", f"which shape is {item.color}?", "what shape do you see?")
        ), item.shape
    if kind == 2:
        return _pick(
            rng, (f"how big is the {item.shape}?", f"what size is the {item.color} shape?")
        ), item.size
    if kind == 3:
        return _pick(
            rng, (f"where is the {item.shape}?", f"where is the {item.color} shape?")
        ), _position_answer(item)
    if kind == 4:
        return _pick(
            rng, ("is the background dark or light?", "what is the background like?")
        ), item.background
    asked = item.color if rng.random() < 0.5 else _pick(rng, tuple(c for c in COLORS if c != item.color))
    return _pick(
        rng, (f"is the {item.shape} {asked}?", f"is the shape {asked}?")
    ), "yes" if asked == item.color else "no"


def transcript_for(item: ShapeItem, rng: np.random.Generator) -> str:
    """What builtin:shapes-speech says about the item: a caption in lower case, words only."""
    return " ".join(re.findall(r"[a-z]+", caption_for(item, rng).lower()))


def spoken(text: str, rng: np.random.Generator, speaker: Any, held_out: bool) -> tuple[np.ndarray, str]:
    """`text` in a drawn espeak-ng voice (the held-out one, or any other), speed and pitch, with silence
    around it and white noise at 15-30 dB SNR: float32 samples at 16 kHz, and the voice's name."""
    from mumo.data.speech import VOICES, draw_voice

    voices = (HELD_OUT_VOICE,) if held_out else tuple(v for v in VOICES if v != HELD_OUT_VOICE)
    voice = draw_voice(rng, voices, speeds=(140, 160, 180, 200), pitches=(30, 45, 60, 75))
    speech = speaker.say(text, voice)
    before, after = (int(rng.integers(800, 4800)) for _ in range(2))  # 50-300 ms of silence
    wave = np.concatenate([np.zeros(before, np.float32), speech, np.zeros(after, np.float32)])
    power = float(np.mean(speech**2))
    noise = rng.standard_normal(len(wave)).astype(np.float32) * np.sqrt(
        power / 10 ** (rng.uniform(15, 30) / 10)
    )
    mixed = wave + noise
    wave = (mixed * rng.uniform(0.4, 0.9) / max(float(np.abs(mixed).max()), 1e-6)).astype(np.float32)
    return wave, voice.name


__all__ = ["HELD_OUT_COMBOS", "HELD_OUT_VOICE", "question_for", "spoken", "transcript_for"]
