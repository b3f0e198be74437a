"""Match what the caption asks for against what the image shows: one binary verdict per image, with reasons.

Every attribute the caption states is checked (colour, shape, size, position, count, order, word, the word's
colour and position, background); attributes it leaves out are not. Each object clause needs its own object:
``a red circle and a red circle`` needs two.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from tools.world.caption import (
    Clause, CountReq, ObjectReq, RelationReq, Requirements, TextReq, category_of, format_clause, parse_caption,
)
from tools.world.vocab import CELL

from .detect import Detections, FoundShape, FoundText, detect

# Centres of two objects in a relation must differ by this fraction of the canvas in the stated direction.
RELATION_MARGIN = 0.05


@dataclass(frozen=True)
class TextRead:
    expected: str
    read: str  # the closest reading among the image's text lines ("" if there is none)


@dataclass(frozen=True)
class Verdict:
    caption: str
    category: str
    passed: bool
    reasons: tuple[str, ...]  # what was expected and what was found, for each failed clause
    text_reads: tuple[TextRead, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insertions, deletions, substitutions)."""
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def _object_fits(req: ObjectReq, d: FoundShape) -> bool:
    return (
        d.colour == req.colour and d.shape == req.shape
        and (req.size is None or d.size == req.size)
        and (req.position is None or d.cell == CELL[req.position])
    )


def _ordered(relation: str, a: FoundShape, b: FoundShape) -> bool:
    m = RELATION_MARGIN
    return {
        "to the left of": a.x < b.x - m,
        "to the right of": a.x > b.x + m,
        "above": a.y < b.y - m,
        "below": a.y > b.y + m,
    }[relation]


def _text_fits(req: TextReq, t: FoundText) -> bool:
    return (
        t.text == req.word
        and (req.colour is None or t.colour == req.colour)
        and (req.position is None or (t.row, t.col) == CELL[req.position])
    )


def _candidates(c: Clause, det: Detections) -> list[tuple[int, ...]]:
    """Ways to satisfy one clause, as tuples of indices (shapes, or texts offset by len(shapes))."""
    shapes, n = det.shapes, len(det.shapes)
    if isinstance(c, ObjectReq):
        return [(i,) for i, d in enumerate(shapes) if _object_fits(c, d)]
    if isinstance(c, RelationReq):
        return [
            (i, j) for i, a in enumerate(shapes) for j, b in enumerate(shapes)
            if i != j and _object_fits(c.first, a) and _object_fits(c.second, b) and _ordered(c.relation, a, b)
        ]
    if isinstance(c, TextReq):
        return [(n + k,) for k, t in enumerate(det.texts) if _text_fits(c, t)]
    raise TypeError(c)


def _assign(options: list[list[tuple[int, ...]]], used: frozenset = frozenset()) -> bool:
    """Whether each clause can take one of its options with no object or line shared between clauses."""
    if not options:
        return True
    return any(
        not used & set(o) and _assign(options[1:], used | set(o))
        for o in options[0]
    )


def _found(det: Detections) -> str:
    things = [d.describe() for d in det.shapes] + [f"text {t.describe()}" for t in det.texts]
    return "; ".join(things) if things else "nothing"


def _closest_read(word: str, det: Detections) -> str:
    reads = [t.text or "" for t in det.texts]
    return min(reads, key=lambda r: (edit_distance(r, word), r), default="")


def check(req: Requirements, det: Detections, caption: str = "") -> Verdict:
    """The verdict of detections against requirements."""
    reasons = []
    if det.background != req.background:
        reasons.append(f"expected a {req.background} background, found {det.background}")
    for c in req.clauses:
        if isinstance(c, CountReq):
            n = sum(d.colour == c.colour and d.shape == c.shape for d in det.shapes)
            if n != c.count:
                reasons.append(f"expected {format_clause(c)}, found {n}")
    matchable = [c for c in req.clauses if not isinstance(c, CountReq)]
    options = [_candidates(c, det) for c in matchable]
    for c, o in zip(matchable, options):
        if not o:
            reasons.append(f"expected {format_clause(c)}, found {_found(det)}")
    if all(options) and not _assign(options):
        reasons.append("each clause is met only by sharing an object with another clause")
    reads = tuple(TextRead(c.word, _closest_read(c.word, det)) for c in req.clauses if isinstance(c, TextReq))
    return Verdict(caption or "", category_of(req), not reasons, tuple(reasons), reads)


def score(image, caption: str) -> Verdict:
    """Judge ``image`` (PIL, or uint8 (H, W, 3)) against ``caption`` (the grammar of docs/world.md; CaptionError if not)."""
    req = parse_caption(caption)
    needs_text = any(isinstance(c, TextReq) for c in req.clauses)
    return check(req, detect(image, read_text=needs_text), caption)
