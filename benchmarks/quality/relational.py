"""relational-match (does the caption fit the picture?) and relational-qa (answer a question about it),
both on benchmarks.quality.scenes. The row generators return structured records, so tests can check
what was meant, not only what was written."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.quality.scenes import (
    Claim,
    Scene,
    Thing,
    article,
    near_miss,
    render_scene,
    sample_scene,
    true_claim,
)
from benchmarks.quality.splits import row_rng, split_counts, write_manifests

MATCH_STREAM, QA_STREAM = 21, 22
SHORT = {"left": "left of", "right": "right of", "above": "above", "below": "below"}
LONG = {"left": "to the left of", "right": "to the right of", "above": "above", "below": "below"}
CAPTIONS = (
    "{a_s} {short} {a_o}",
    "the {s} is {long} the {o}",
    "there is {a_s} {short} {a_o}",
    "{a_s} sits {long} {a_o}",
    "in this picture {a_s} is {long} {a_o}",
)


@dataclass(frozen=True)
class MatchRecord:
    scene: Scene
    truth: Claim  # a true claim about the scene
    claim: Claim  # the captioned claim: truth itself, or truth with one thing changed
    change: str | None  # None for true captions, else colour / shape / relation
    caption: str

    @property
    def label(self) -> str:
        return "yes" if self.change is None else "no"


def phrase(template: str, claim: Claim) -> str:
    """A caption or question template filled with the claim's words."""
    s, o = str(claim.subject), str(claim.object)
    a_s, a_o = f"{article(s)} {s}", f"{article(o)} {o}"
    return template.format(s=s, o=o, a_s=a_s, a_o=a_o, short=SHORT[claim.relation], long=LONG[claim.relation])


def match_record(rng: np.random.Generator) -> MatchRecord:
    """Half true captions, half near misses (colour, shape and relation changes a third each)."""
    scene = sample_scene(rng)
    truth = true_claim(scene, rng)
    claim, change = (truth, None) if rng.random() < 0.5 else near_miss(scene, truth, rng)
    return MatchRecord(scene, truth, claim, change, phrase(CAPTIONS[rng.integers(len(CAPTIONS))], claim))


@dataclass(frozen=True)
class QARecord:
    scene: Scene
    kind: str  # colour | shape | relation-yes-no | relation-word
    question: str
    answer: str


QUESTIONS = {
    "colour": (
        "what colour is the {shape}?",
        "what is the colour of the {shape}?",
        "which colour does the {shape} have?",
    ),
    "shape": (
        "what shape is the {colour} object?",
        "what is the {colour} thing?",
        "which shape is {colour}?",
    ),
    "relation-yes-no": (
        "is the {s} {short} the {o}?",
        "is there {a_s} {short} {a_o}?",
        "is the {s} {long} the {o}?",
    ),
    "relation-word": ("where is the {s} relative to the {o}?", "where is the {s} compared to the {o}?"),
}
KINDS = tuple(QUESTIONS)


def qa_record(rng: np.random.Generator) -> QARecord:
    """A question of a kind drawn uniformly, on a scene where it has one answer: colour questions name a
    shape only one thing has, shape questions a colour only one thing has."""
    kind = KINDS[rng.integers(len(KINDS))]
    scene = sample_scene(
        rng, same_shape=False if kind == "colour" else None, same_colour=False if kind == "shape" else None
    )
    template = QUESTIONS[kind][rng.integers(len(QUESTIONS[kind]))]
    asked = (scene.first, scene.second)[rng.integers(2)].thing
    if kind == "colour":
        return QARecord(scene, kind, template.format(shape=asked.shape), asked.colour)
    if kind == "shape":
        return QARecord(scene, kind, template.format(colour=asked.colour), asked.shape)
    claim = true_claim(scene, rng)
    if kind == "relation-yes-no":
        answer = "yes" if rng.random() < 0.5 else "no"
        if answer == "no":
            claim, _ = near_miss(scene, claim, rng, kind="relation")
        return QARecord(scene, kind, phrase(template, claim), answer)
    s, o = (_reference(claim.subject, claim.object, rng), _reference(claim.object, claim.subject, rng))
    return QARecord(scene, kind, template.format(s=s, o=o), claim.relation)


def _reference(thing: Thing, other: Thing, rng: np.random.Generator) -> str:
    """The thing's full name, or half the time the shortest name that tells it from the other."""
    if rng.random() < 0.5:
        return str(thing)
    if thing.shape != other.shape:
        return thing.shape
    return f"{thing.colour} object"


def match_records(n: int, seed: int) -> dict[str, list[MatchRecord]]:
    return {
        split: [match_record(row_rng(seed, MATCH_STREAM, split, i)) for i in range(count)]
        for split, count in split_counts(n).items()
    }


def qa_records(n: int, seed: int) -> dict[str, list[QARecord]]:
    return {
        split: [qa_record(row_rng(seed, QA_STREAM, split, i)) for i in range(count)]
        for split, count in split_counts(n).items()
    }


def _write(
    out: Path,
    records: dict[str, list[MatchRecord]] | dict[str, list[QARecord]],
    stream: int,
    seed: int,
    columns: tuple[str, str],
) -> None:
    """Render each record's scene (with its own image stream) and write the manifests."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    tables = {}
    for split, rows in records.items():
        cells = []
        for i, record in enumerate(rows):
            path = f"images/{split}-{i:05d}.png"
            render_scene(record.scene, row_rng(seed, stream + 100, split, i)).save(out / path)
            cells.append({"image": path, **{column: getattr(record, column) for column in columns}})
        tables[split] = pd.DataFrame(cells)
    write_manifests(out, tables)


def make_relational_match(out: Path, n: int, seed: int) -> None:
    """image, caption → label (yes / no)."""
    _write(out, match_records(n, seed), MATCH_STREAM, seed, ("caption", "label"))


def make_relational_qa(out: Path, n: int, seed: int) -> None:
    """image, question → answer (a colour, a shape, yes / no, or left / right / above / below)."""
    _write(out, qa_records(n, seed), QA_STREAM, seed, ("question", "answer"))
