"""Two-object scenes (48x48 RGB) in which exactly one spatial relation holds clearly, and claims about
them ("the red circle is left of the blue square") that can be checked against the scene."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

SIDE = 48
SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue", "yellow", "purple", "orange")
RELATIONS = ("left", "right", "above", "below")
INVERSE = {"left": "right", "right": "left", "above": "below", "below": "above"}
RGB = {
    "red": (215, 35, 35),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 230, 35),
    "purple": (145, 55, 185),
    "orange": (245, 130, 25),
}
SIZE = (10, 16)  # bounding-box side in pixels, inclusive
GAP = (3, 10)  # free pixels between the boxes along the relation's axis
CROSS_OFFSET = 3  # largest offset across that axis: the boxes overlap there, so no other relation holds
SUPERSAMPLE = 4  # drawn 4x larger and box-filtered down: smooth edges


@dataclass(frozen=True)
class Thing:
    colour: str
    shape: str

    def __str__(self) -> str:
        return f"{self.colour} {self.shape}"


@dataclass(frozen=True)
class Placed:
    thing: Thing
    x: float  # centre, pixels from the left
    y: float  # centre, pixels from the top
    size: int


@dataclass(frozen=True)
class Scene:
    """Two different things; `relation` is where the first is relative to the second."""

    first: Placed
    second: Placed
    relation: str
    background: tuple[int, int, int]

    def things(self) -> tuple[Thing, Thing]:
        return self.first.thing, self.second.thing


@dataclass(frozen=True)
class Claim:
    """'subject is <relation> of object', each named by colour and shape."""

    subject: Thing
    relation: str
    object: Thing


def sample_scene(
    rng: np.random.Generator, same_shape: bool | None = None, same_colour: bool | None = None
) -> Scene:
    """Two things that differ in colour or shape (optionally constrained), sizes, a relation and a
    layout where that relation holds with a clear gap and the others do not."""
    while True:
        first = Thing(COLOURS[rng.integers(6)], SHAPES[rng.integers(4)])
        second = Thing(COLOURS[rng.integers(6)], SHAPES[rng.integers(4)])
        if first == second:
            continue
        if same_shape is not None and (first.shape == second.shape) != same_shape:
            continue
        if same_colour is not None and (first.colour == second.colour) != same_colour:
            continue
        break
    relation = RELATIONS[rng.integers(4)]
    sizes = rng.integers(SIZE[0], SIZE[1] + 1, size=2)
    along = (sizes[0] + sizes[1]) / 2 + rng.integers(GAP[0], GAP[1] + 1)
    across = int(rng.integers(-CROSS_OFFSET, CROSS_OFFSET + 1))
    sign = -1 if relation in ("left", "above") else 1  # first minus second, along the axis
    dx, dy = (sign * along, across) if relation in ("left", "right") else (across, sign * along)
    # (x, y) of both centres relative to the second, then the pair moved to a random place inside
    centres = np.array([[dx, dy], [0.0, 0.0]])
    halves = sizes[:, None] / 2
    low, high = (centres - halves).min(0), (centres + halves).max(0)
    shift = rng.uniform(1 - low, SIDE - 1 - high)
    centres = centres + shift
    shade = rng.integers(20, 90) if rng.random() < 0.5 else rng.integers(170, 235)
    red, green, blue = (int(np.clip(shade + rng.integers(-15, 16), 0, 255)) for _ in range(3))
    placed = [
        Placed(thing, float(centre[0]), float(centre[1]), int(size))
        for thing, centre, size in zip((first, second), centres, sizes, strict=True)
    ]
    return Scene(placed[0], placed[1], relation, (red, green, blue))


def relation_of(a: Placed, b: Placed) -> str | None:
    """Where a is relative to b, when it holds clearly (a gap along one axis, overlap across it)."""
    gap_x = abs(a.x - b.x) - (a.size + b.size) / 2
    gap_y = abs(a.y - b.y) - (a.size + b.size) / 2
    if gap_x > 0 and gap_y < 0:
        return "left" if a.x < b.x else "right"
    if gap_y > 0 and gap_x < 0:
        return "above" if a.y < b.y else "below"
    return None


def holds(scene: Scene, claim: Claim) -> bool:
    """The claim is true when both named things are in the scene and the relation holds between them."""
    placed = {p.thing: p for p in (scene.first, scene.second)}
    if claim.subject not in placed or claim.object not in placed or claim.subject == claim.object:
        return False
    return relation_of(placed[claim.subject], placed[claim.object]) == claim.relation


def true_claim(scene: Scene, rng: np.random.Generator) -> Claim:
    """The scene's relation, told from the first thing's side or (inverted) from the second's."""
    if rng.random() < 0.5:
        return Claim(scene.first.thing, scene.relation, scene.second.thing)
    return Claim(scene.second.thing, INVERSE[scene.relation], scene.first.thing)


def near_miss(
    scene: Scene, claim: Claim, rng: np.random.Generator, kind: str | None = None
) -> tuple[Claim, str]:
    """A false claim that changes exactly one thing of a true one: one side's colour, one side's shape,
    or the relation. A changed side never names the other thing, so the claim stays about two things."""
    kind = kind or ("colour", "shape", "relation")[rng.integers(3)]
    if kind == "relation":
        others = [r for r in RELATIONS if r != claim.relation]
        return replace(claim, relation=others[rng.integers(3)]), kind
    side = ("subject", "object")[rng.integers(2)]
    current: Thing = getattr(claim, side)
    choices = COLOURS if kind == "colour" else SHAPES
    candidates = []
    for value in choices:
        changed = replace(current, **{kind: value})
        candidate = replace(claim, **{side: changed})
        if value != getattr(current, kind) and changed not in scene.things() and not holds(scene, candidate):
            candidates.append(candidate)
    return candidates[rng.integers(len(candidates))], kind


def render_scene(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """The two things in jittered colours on the background, with light pixel noise."""
    big = Image.new("RGB", (SIDE * SUPERSAMPLE, SIDE * SUPERSAMPLE), scene.background)
    draw = ImageDraw.Draw(big)
    for placed in (scene.first, scene.second):
        fill = tuple(int(np.clip(v + rng.integers(-20, 21), 0, 255)) for v in RGB[placed.thing.colour])
        half = placed.size * SUPERSAMPLE / 2
        x0, y0 = placed.x * SUPERSAMPLE - half, placed.y * SUPERSAMPLE - half
        x1, y1 = x0 + 2 * half - 1, y0 + 2 * half - 1
        if placed.thing.shape == "circle":
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif placed.thing.shape == "square":
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        elif placed.thing.shape == "triangle":
            draw.polygon([((x0 + x1) / 2, y0), (x1, y1), (x0, y1)], fill=fill)
        else:  # cross: two bars a third of the side thick
            bar = 2 * half / 3
            draw.rectangle((x0, y0 + bar, x1, y1 - bar), fill=fill)
            draw.rectangle((x0 + bar, y0, x1 - bar, y1), fill=fill)
    small = np.asarray(big.reduce(SUPERSAMPLE), np.float32)  # (48, 48, 3)
    small = small + rng.normal(0, 6.0, small.shape)
    return Image.fromarray(np.clip(np.rint(small), 0, 255).astype(np.uint8))


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
