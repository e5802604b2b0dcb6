"""A unit n-gram language model (interpolated Witten-Bell), and CTC prefix beam search with it.

Fitted on the train targets' units (characters or word pieces) when model.decoder is ctc with lm_order >
0, saved with the target, and used at decoding by shallow fusion: each hypothesis scores
log P_ctc + lm_weight * log P_lm + length_bonus * units. Misspellings a CTC model makes on an unheard
voice ("athe" for "at the") are units the language model finds unlikely.
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

import numpy as np

END = -1  # the unit after a text's last one
NEG = -1e30


class UnitNgram:
    def __init__(self, order: int, vocab: int) -> None:
        self.order, self.vocab = order, vocab
        self.counts: list[dict[tuple[int, ...], dict[int, int]]] = [{} for _ in range(order)]
        self._totals: list[dict[tuple[int, ...], tuple[int, int]]] = []

    def fit(self, sequences: list[list[int]]) -> None:
        counts: list[defaultdict[tuple[int, ...], defaultdict[int, int]]] = [
            defaultdict(lambda: defaultdict(int)) for _ in range(self.order)
        ]
        for sequence in sequences:
            units = [*sequence, END]
            for i, unit in enumerate(units):
                for n in range(min(self.order, i + 1)):
                    counts[n][tuple(units[i - n : i])][unit] += 1
        self.counts = [{h: dict(d) for h, d in level.items()} for level in counts]
        self._index()

    def _index(self) -> None:
        self._totals = [{h: (sum(d.values()), len(d)) for h, d in level.items()} for level in self.counts]

    def prob(self, history: tuple[int, ...], unit: int) -> float:
        """P(unit | the last order-1 units of history), interpolated down to a uniform distribution."""
        p = 1.0 / (self.vocab + 1)
        for n in range(min(self.order, len(history) + 1)):
            context = history[len(history) - n :] if n else ()
            following = self.counts[n].get(context)
            if following is None:
                break
            total, types = self._totals[n][context]
            p = (following.get(unit, 0) + types * p) / (total + types)
        return p

    def state(self) -> dict[str, Any]:
        rows = [
            [*context, unit, count]
            for level in self.counts
            for context, d in level.items()
            for unit, count in d.items()
        ]
        return {"order": self.order, "vocab": self.vocab, "counts": rows}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> UnitNgram:
        model = cls(int(state["order"]), int(state["vocab"]))
        for row in state["counts"]:
            context, unit, count = tuple(row[:-2]), int(row[-2]), int(row[-1])
            model.counts[len(context)].setdefault(context, {})[unit] = count
        model._index()
        return model


def _add(a: float, b: float) -> float:
    if a == NEG:
        return b
    if b == NEG:
        return a
    top = max(a, b)
    return top + math.log(math.exp(a - top) + math.exp(b - top))


def prefix_beam_search(
    log_probs: np.ndarray,
    blank: int,
    beam: int,
    lm: UnitNgram | None = None,
    lm_weight: float = 0.5,
    length_bonus: float = 0.5,
    candidates: int = 8,
) -> list[int]:
    """The best unit sequence for (T, V) CTC log probabilities (one row, its own T steps)."""
    # prefix → [log P(ends in blank), log P(ends in its last unit), language model score]
    beams: dict[tuple[int, ...], list[float]] = {(): [0.0, NEG, 0.0]}

    def lm_score(prefix: tuple[int, ...], unit: int) -> float:
        return lm_weight * math.log(lm.prob(prefix, unit)) if lm is not None and lm_weight else 0.0

    for row in log_probs:
        top = np.argpartition(row, -candidates)[-candidates:] if len(row) > candidates else range(len(row))
        following: dict[tuple[int, ...], list[float]] = {}
        for prefix, (blank_end, unit_end, score) in beams.items():
            here = following.setdefault(prefix, [NEG, NEG, score])
            here[0] = _add(here[0], _add(blank_end, unit_end) + float(row[blank]))
            for unit in (int(u) for u in top):
                if unit == blank:
                    continue
                p = float(row[unit])
                longer = prefix + (unit,)
                if prefix and prefix[-1] == unit:  # a repeat: merges unless a blank came between
                    here[1] = _add(here[1], unit_end + p)
                    source = blank_end
                else:
                    source = _add(blank_end, unit_end)
                entry = following.setdefault(longer, [NEG, NEG, score + lm_score(prefix, unit)])
                entry[1] = _add(entry[1], source + p)
        ranked = sorted(
            following.items(),
            key=lambda kv: _add(kv[1][0], kv[1][1]) + kv[1][2] + length_bonus * len(kv[0]),
            reverse=True,
        )
        beams = dict(ranked[:beam])

    def final(item: tuple[tuple[int, ...], list[float]]) -> float:
        prefix, (blank_end, unit_end, score) = item
        return _add(blank_end, unit_end) + score + lm_score(prefix, END) + length_bonus * len(prefix)

    return list(max(beams.items(), key=final)[0])


__all__ = ["UnitNgram", "prefix_beam_search"]
