"""Concrete scenes: where each object and word sits, laid out from a caption's requirements.

A scene is its requirements (what the caption says) plus the placed shapes and words (what the picture shows).
Positions are fractions of the canvas, so one scene renders at any size. ``layout`` turns requirements into a
scene with a seeded ``random.Random``; ``sample_scene`` first draws requirements of a category.

Placement rules (the judge reads the picture back with the same rules):
- An object occupies one cell of the 3x3 grid, centred in it with a small jitter that never lets it leave the
  cell, so objects never overlap and keep a visible gap.
- A word occupies its whole row: it is left-aligned, centred or right-aligned by the column of its position
  (a word of 4 letters at 64 px is wider than a cell). Without a position it is centred in the middle row.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from .caption import (
    Clause, CountReq, ObjectReq, Requirements, RelationReq, TextReq, category_of, format_caption,
)
from .vocab import (
    CATEGORIES, CELL, COLOURS, NAMED_BACKGROUNDS, POSITION_OF_CELL, POSITIONS, RELATIONS, SHAPES, SIZE_FRACTION,
    SIZES,
)
from .words import word_list

ALIGN_OF_COLUMN = ("left", "center", "right")


class LayoutError(ValueError):
    """The requirements cannot be placed on the 3x3 grid (e.g. two things in one cell)."""


@dataclass(frozen=True)
class PlacedShape:
    shape: str
    colour: str
    size: str
    row: int
    col: int
    dx: float = 0.0  # centre offset from the cell centre, as a fraction of the canvas side
    dy: float = 0.0

    @property
    def centre(self) -> tuple[float, float]:
        """(x, y) of the centre as fractions of the canvas side."""
        return (self.col + 0.5) / 3 + self.dx, (self.row + 0.5) / 3 + self.dy


@dataclass(frozen=True)
class PlacedWord:
    word: str
    colour: str
    row: int
    col: int  # 0: left-aligned, 1: centred, 2: right-aligned


@dataclass(frozen=True)
class Scene:
    requirements: Requirements
    shapes: tuple[PlacedShape, ...]
    words: tuple[PlacedWord, ...]

    @property
    def background(self) -> str:
        return self.requirements.background

    @property
    def category(self) -> str:
        return category_of(self.requirements)

    def to_dict(self) -> dict:
        return {
            "caption": caption(self),
            "background": self.background,
            "shapes": [asdict(s) for s in self.shapes],
            "words": [asdict(w) for w in self.words],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        from .caption import parse_caption

        return cls(
            requirements=parse_caption(d["caption"]),
            shapes=tuple(PlacedShape(**s) for s in d["shapes"]),
            words=tuple(PlacedWord(**w) for w in d["words"]),
        )


def caption(scene: Scene) -> str:
    """The caption of a scene: a pure function of its requirements."""
    return format_caption(scene.requirements)


# --- layout --------------------------------------------------------------------------------------------------

def _jitter(rng: random.Random, size: str) -> float:
    # Slack between the shape and its cell, less a margin of 0.02 S on each side so neighbours never touch.
    limit = max(0.0, min(0.04, (1 / 3 - SIZE_FRACTION[size]) / 2 - 0.02))
    return rng.uniform(-limit, limit) if limit else 0.0


def _place(rng: random.Random, shape: str, colour: str, size: str | None, cell: tuple[int, int]) -> PlacedShape:
    size = size or rng.choice(SIZES)
    return PlacedShape(shape, colour, size, cell[0], cell[1], _jitter(rng, size), _jitter(rng, size))


_RELATION_HOLDS = {
    "to the left of": lambda a, b: a[1] < b[1],
    "to the right of": lambda a, b: a[1] > b[1],
    "above": lambda a, b: a[0] < b[0],
    "below": lambda a, b: a[0] > b[0],
}


def _try_layout(req: Requirements, rng: random.Random) -> Scene:
    words, free = [], set(CELL.values())
    text_rows: set[int] = set()
    for c in req.clauses:
        if isinstance(c, TextReq):
            row, col = CELL[c.position or "center"]
            if row in text_rows:
                raise LayoutError(f"two words in row {row} of the grid")
            text_rows.add(row)
            words.append(PlacedWord(c.word, c.colour or rng.choice(tuple(COLOURS)), row, col))
    free = {cell for cell in free if cell[0] not in text_rows}

    def claim(cell: tuple[int, int], what: str) -> tuple[int, int]:
        if cell not in free:
            raise LayoutError(f"no room for {what} at the {POSITION_OF_CELL[cell]}")
        free.remove(cell)
        return cell

    def any_cell(what: str) -> tuple[int, int]:
        if not free:
            raise LayoutError(f"no free cell left for {what}")
        return claim(rng.choice(sorted(free)), what)

    shapes: list[PlacedShape] = []
    # Most constrained first: fixed positions, then relations, then the rest.
    for c in req.clauses:
        if isinstance(c, ObjectReq) and c.position:
            shapes.append(_place(rng, c.shape, c.colour, c.size, claim(CELL[c.position], c.noun_phrase())))
    for c in req.clauses:
        if isinstance(c, RelationReq):
            pairs = [(a, b) for a in sorted(free) for b in sorted(free) if a != b and _RELATION_HOLDS[c.relation](a, b)]
            if not pairs:
                raise LayoutError(f"no two free cells for {c.first.noun_phrase()} {c.relation} ...")
            a, b = rng.choice(pairs)
            shapes.append(_place(rng, c.first.shape, c.first.colour, c.first.size, claim(a, "the first object")))
            shapes.append(_place(rng, c.second.shape, c.second.colour, c.second.size, claim(b, "the second object")))
    for c in req.clauses:
        if isinstance(c, CountReq):
            for _ in range(c.count):
                shapes.append(_place(rng, c.shape, c.colour, None, any_cell(f"{c.count} {c.shape}s")))
        elif isinstance(c, ObjectReq) and not c.position:
            shapes.append(_place(rng, c.shape, c.colour, c.size, any_cell(c.noun_phrase())))
    return Scene(requirements=req, shapes=tuple(shapes), words=tuple(words))


def layout(req: Requirements, rng: random.Random, attempts: int = 50) -> Scene:
    """Place the requirements on the grid; random choices come from ``rng``. Raises ``LayoutError``."""
    error = None
    for _ in range(attempts):
        try:
            return _try_layout(req, rng)
        except LayoutError as e:  # a random choice may box a later clause in; try other choices
            error = e
    raise LayoutError(f"cannot lay out {format_caption(req)!r}: {error}")


# --- sampling requirements by category -----------------------------------------------------------------------

@dataclass(frozen=True)
class SamplingOptions:
    words: str = "train"  # which word list: train | heldout
    max_word_len: int = 6
    p_background: float = 0.1  # chance of a named (black or gray) background
    # "mixed" draws a category per scene: uniformly when None, else with these relative weights, one per
    # category in CATEGORIES order (a text-heavy mix, for instance). None keeps the scenes of earlier data sets.
    category_weights: tuple[float, ...] | None = None

    def __post_init__(self):
        weights = self.category_weights
        if weights is not None and (len(weights) != len(CATEGORIES) or any(w < 0 for w in weights)
                                    or sum(weights) <= 0):
            raise ValueError(f"category_weights must be {len(CATEGORIES)} weights >= 0 (one per category of "
                             f"{list(CATEGORIES)}) with a positive sum, got {weights!r}")


def _object(rng: random.Random, p_size: float = 0.3, colour=None, shape=None) -> ObjectReq:
    return ObjectReq(
        colour=colour or rng.choice(tuple(COLOURS)),
        shape=shape or rng.choice(SHAPES),
        size=rng.choice(SIZES) if rng.random() < p_size else None,
    )


def _with_position(obj: ObjectReq, position: str) -> ObjectReq:
    return ObjectReq(obj.colour, obj.shape, obj.size, position)


def _clauses(rng: random.Random, category: str, opts: SamplingOptions) -> tuple[Clause, ...]:
    words = word_list(opts.words, opts.max_word_len)
    if category == "single_object":
        return (_object(rng),)
    if category == "position":
        return (_with_position(_object(rng), rng.choice(POSITIONS)),)
    if category == "two_objects":
        a = _object(rng)
        # Same colour or same shape: otherwise the caption would be a colour_attribution one.
        if rng.random() < 0.5:
            b = _object(rng, colour=a.colour, shape=rng.choice([s for s in SHAPES if s != a.shape]))
        else:
            b = _object(rng, shape=a.shape, colour=rng.choice([c for c in COLOURS if c != a.colour]))
        return (a, b)
    if category == "colour_attribution":
        a = ObjectReq(rng.choice(tuple(COLOURS)), rng.choice(SHAPES))
        b = ObjectReq(rng.choice([c for c in COLOURS if c != a.colour]),
                      rng.choice([s for s in SHAPES if s != a.shape]))
        return (a, b)
    if category == "relation":
        a = _object(rng, p_size=0.2)
        b = _object(rng, p_size=0.2)
        while (b.colour, b.shape) == (a.colour, a.shape):  # a relation between two identical things is ambiguous
            b = _object(rng, p_size=0.2)
        return (RelationReq(a, rng.choice(RELATIONS), b),)
    if category == "counting":
        return (CountReq(rng.randint(2, 4), rng.choice(tuple(COLOURS)), rng.choice(SHAPES)),)
    if category == "text":
        colour = rng.choice(tuple(COLOURS)) if rng.random() < 0.5 else None
        return (TextReq(rng.choice(words), colour),)
    if category == "text_layout":
        text_pos = rng.choice(POSITIONS)
        obj_pos = rng.choice([p for p in POSITIONS if CELL[p][0] != CELL[text_pos][0]])
        text = TextReq(rng.choice(words), rng.choice(tuple(COLOURS)), text_pos)
        return (text, _with_position(_object(rng), obj_pos))
    raise ValueError(f"category must be one of {CATEGORIES + ('mixed',)}, got {category!r}")


def sample_requirements(rng: random.Random, category: str, opts: SamplingOptions = SamplingOptions()) -> Requirements:
    """Requirements of the given category (or "mixed": a category drawn for each scene, uniformly or with
    ``opts.category_weights``)."""
    if category == "mixed":
        if opts.category_weights is None:
            category = rng.choice(CATEGORIES)
        else:
            category = rng.choices(CATEGORIES, weights=opts.category_weights)[0]
    clauses = _clauses(rng, category, opts)
    background = rng.choice(NAMED_BACKGROUNDS) if rng.random() < opts.p_background else "white"
    req = Requirements(clauses, background)
    assert category_of(req) == category, (category, format_caption(req))
    return req


def sample_scene(seed: int, category: str = "mixed", opts: SamplingOptions = SamplingOptions()) -> Scene:
    """The scene of a seed: same seed and options, same scene (and so the same pixels) on every machine."""
    rng = random.Random(seed)
    return layout(sample_requirements(rng, category, opts), rng)
