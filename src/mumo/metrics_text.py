"""Metrics of generated text against one reference per row.

- exact_match: the share of rows whose text equals the reference, compared case-folded, with runs of
  whitespace as one space and without a final full stop ("A red circle." = "a red circle").
- bleu: corpus BLEU (sacrebleu, 0-100), with exponential smoothing and effective order, so that short
  references (one-word answers) are not scored 0 for lacking 4-grams.
- chrf: corpus chrF (sacrebleu, 0-100).
- cider: CIDEr-D (pycocoevalcap's pure-Python scorer, 0-10) on lower-cased words.
- wer, cer: word and character error rates (jiwer) on the same normalized text as exact_match.

The scorers are imported on first use (sacrebleu, jiwer and pycocoevalcap are only needed here).
"""

from __future__ import annotations

import re

import numpy as np

TEXT_DIRECTIONS = {
    "exact_match": "max",
    "token_accuracy": "max",
    "bleu": "max",
    "chrf": "max",
    "cider": "max",
    "wer": "min",
    "cer": "min",
}


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.casefold()).strip().removesuffix(".").strip()


def _words(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))


def text_metrics(references: list[str], hypotheses: list[str]) -> dict[str, float]:
    """exact_match, bleu, chrf, cider, wer and cer of `hypotheses` against `references` (NaN for none)."""
    if not references:
        return {name: float("nan") for name in TEXT_DIRECTIONS if name != "token_accuracy"}
    import jiwer
    from pycocoevalcap.cider.cider import Cider
    from sacrebleu.metrics import BLEU, CHRF

    refs, hyps = [normalize(r) for r in references], [normalize(h) for h in hypotheses]
    exact = float(np.mean([r == h for r, h in zip(refs, hyps, strict=True)]))
    bleu = BLEU(smooth_method="exp", effective_order=True).corpus_score(hypotheses, [references]).score
    chrf = CHRF().corpus_score(hypotheses, [references]).score
    cider, _ = Cider().compute_score(
        {i: [_words(r)] for i, r in enumerate(references)}, {i: [_words(h)] for i, h in enumerate(hypotheses)}
    )
    scored = [
        (r, h) for r, h in zip(refs, hyps, strict=True) if r
    ]  # jiwer needs a reference to count against
    wer = jiwer.wer([r for r, _ in scored], [h for _, h in scored]) if scored else float("nan")
    cer = jiwer.cer([r for r, _ in scored], [h for _, h in scored]) if scored else float("nan")
    return {
        "exact_match": exact,
        "bleu": float(bleu),
        "chrf": float(chrf),
        "cider": float(cider),
        "wer": float(wer),
        "cer": float(cer),
    }


def sentence_scores(references: list[str], hypotheses: list[str]) -> list[float]:
    """Per-row sentence chrF (0-100): how close each generated text is, for picking best and worst rows."""
    from sacrebleu.metrics import CHRF

    chrf = CHRF()
    return [float(chrf.sentence_score(h, [r]).score) for r, h in zip(references, hypotheses, strict=True)]


__all__ = ["TEXT_DIRECTIONS", "normalize", "sentence_scores", "text_metrics"]
