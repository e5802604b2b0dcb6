"""Cheap raw features per modality for the baselines: what a careful practitioner would try first."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
import soundfile as sf
import torch
from PIL import Image
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import StandardScaler

from mumo.config import AudioOptions
from mumo.modalities.audio import log_mel

IMAGE_SIDE = 16
AUDIO_SEGMENTS = 4


def image_features(paths: list[str], base: Path) -> np.ndarray:
    """(N, 256): each image as 16x16 grey pixels, 0..1."""
    rows = []
    for path in paths:
        with Image.open(base / path) as image:
            rows.append(np.asarray(image.convert("L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.BOX)))
    return np.stack(rows).reshape(len(paths), -1).astype(np.float32) / 255  # (N, 16 * 16)


def audio_features(paths: list[str], base: Path, options: AudioOptions | None = None) -> np.ndarray:
    """(N, 64 * (2 + 4)): per mel band the mean and std over time, and the mean over 4 time segments."""
    options = options or AudioOptions()
    rows = []
    for path in paths:
        wave, rate = sf.read(base / path, dtype="float32", always_2d=True)
        mel = log_mel(torch.from_numpy(wave.mean(1)), rate, options).numpy()  # (n_mels, T)
        segments = [part.mean(1) for part in np.array_split(mel, AUDIO_SEGMENTS, axis=1)]
        rows.append(np.concatenate([mel.mean(1), mel.std(1), *segments]))
    return np.stack(rows).astype(np.float32)


def numeric_features(table: pd.DataFrame) -> np.ndarray:
    """(N, 2C): the values (NaN where empty) then a 0/1 missing indicator per column; NaNs are imputed
    by the Featurizer with the train mean."""
    values = table.to_numpy(dtype=np.float64)
    return np.concatenate([values, np.isnan(values).astype(np.float64)], axis=1)


def raw_features(
    table: pd.DataFrame, base: Path, inputs: dict[str, str]
) -> dict[str, np.ndarray | list[str]]:
    """Modality → raw features for one split: arrays for image/audio/numeric, strings for text (several
    columns of one kind are joined side by side, or with a space for text)."""
    by_kind: dict[str, list[str]] = {}
    for column, kind in inputs.items():
        by_kind.setdefault(kind, []).append(column)
    out: dict[str, np.ndarray | list[str]] = {}
    for kind, columns in sorted(by_kind.items()):
        if kind == "image":
            out[kind] = np.concatenate([image_features(table[c].tolist(), base) for c in columns], axis=1)
        elif kind == "audio":
            out[kind] = np.concatenate([audio_features(table[c].tolist(), base) for c in columns], axis=1)
        elif kind == "text":
            out[kind] = table[columns].fillna("").astype(str).agg(" ".join, axis=1).tolist()
        else:
            out[kind] = numeric_features(table[columns])
    return out


class Featurizer:
    """Fitted on the rows a model trains on, applied to any split: dense inputs are mean-imputed and
    standardized, text becomes TF-IDF of word 1-2 grams; the chosen modalities side by side."""

    def __init__(self, modalities: list[str]) -> None:
        self.modalities = modalities
        self.steps: dict[str, tuple[np.ndarray, StandardScaler] | TfidfVectorizer] = {}

    def fit(self, raw: dict[str, np.ndarray | list[str]]) -> Featurizer:
        for kind in self.modalities:
            if kind == "text":
                self.steps[kind] = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True).fit(raw[kind])
            else:
                values = np.asarray(raw[kind], np.float64)
                present = ~np.isnan(values)
                means = np.where(present, values, 0.0).sum(0) / np.maximum(present.sum(0), 1)  # (F,)
                self.steps[kind] = (means, StandardScaler().fit(_impute(values, means)))
        return self

    def transform(self, raw: dict[str, np.ndarray | list[str]]) -> sp.csr_matrix | np.ndarray:
        """(N, F): sparse when text is among the modalities, else dense."""
        parts: list[sp.csr_matrix | np.ndarray] = []
        for kind in self.modalities:
            step = self.steps[kind]
            if isinstance(step, TfidfVectorizer):
                parts.append(step.transform(raw[kind]))
            else:
                means, scaler = step
                parts.append(scaler.transform(_impute(np.asarray(raw[kind], np.float64), means)))
        if any(sp.issparse(p) for p in parts):
            return sp.hstack([sp.csr_matrix(p) for p in parts]).tocsr()
        return np.concatenate(parts, axis=1)


def _impute(values: np.ndarray, means: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(values), means[None, :], values)
