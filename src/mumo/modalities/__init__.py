"""Modalities: each module registers its processor and encoders on import."""

from mumo.modalities import audio, hf, hf_encoder, image, tabular, text  # noqa: F401  (registration)
from mumo.modalities.base import ENCODERS, PROCESSORS, Processor

__all__ = ["ENCODERS", "PROCESSORS", "Processor"]
