"""The caption grammar of docs/world.md: structured requirements, ``format_caption`` and ``parse_caption``.

A caption is a list of clauses plus a background. ``parse_caption(format_caption(r)) == r`` for every
requirement ``r`` the grammar can express; ``parse_caption`` names the first word it cannot read and what the
grammar allows there.
"""

from __future__ import annotations

from dataclasses import dataclass

from .vocab import (
    COLOURS, COUNT_WORDS, NAMED_BACKGROUNDS, NUMBER_WORD, POSITIONS, RELATIONS, SHAPES, SIZES,
    WORD_MAX_LEN, WORD_MIN_LEN,
)


@dataclass(frozen=True)
class ObjectReq:
    """``a [size] colour shape [at the position]``; None means the caption does not say."""

    colour: str
    shape: str
    size: str | None = None
    position: str | None = None

    def noun_phrase(self) -> str:
        size = f"{self.size} " if self.size else ""
        return f"a {size}{self.colour} {self.shape}"


@dataclass(frozen=True)
class CountReq:
    """``two|three|four colour shapes``: exactly that many."""

    count: int
    colour: str
    shape: str


@dataclass(frozen=True)
class RelationReq:
    """``object_np relation object_np``: the centres ordered as stated (objects carry no position)."""

    first: ObjectReq
    relation: str
    second: ObjectReq


@dataclass(frozen=True)
class TextReq:
    """``the word WORD [in colour] [at the position]``."""

    word: str
    colour: str | None = None
    position: str | None = None


Clause = ObjectReq | CountReq | RelationReq | TextReq


@dataclass(frozen=True)
class Requirements:
    clauses: tuple[Clause, ...]
    background: str = "white"

    @property
    def category(self) -> str:
        return category_of(self)


class CaptionError(ValueError):
    """A caption outside the grammar; the message names the first unreadable word and what is allowed."""


def category_of(req: Requirements) -> str:
    """The GenEval-style category of a caption, or "other" for a compound caption outside the eight.

    Two plain objects are ``colour_attribution`` when they differ in both colour and shape (the caption binds a
    colour to each shape) and ``two_objects`` otherwise.
    """
    clauses = req.clauses
    texts = [c for c in clauses if isinstance(c, TextReq)]
    if len(texts) == 1 and len(clauses) == 1:
        return "text"
    if len(texts) == 1 and len(clauses) == 2:
        return "text_layout"
    if texts:
        return "other"
    if len(clauses) == 1:
        (c,) = clauses
        if isinstance(c, CountReq):
            return "counting"
        if isinstance(c, RelationReq):
            return "relation"
        return "position" if c.position else "single_object"
    if len(clauses) == 2 and all(isinstance(c, ObjectReq) for c in clauses):
        a, b = clauses
        return "colour_attribution" if a.colour != b.colour and a.shape != b.shape else "two_objects"
    return "other"


def format_clause(c: Clause) -> str:
    if isinstance(c, ObjectReq):
        where = f" at the {c.position}" if c.position else ""
        return c.noun_phrase() + where
    if isinstance(c, CountReq):
        return f"{NUMBER_WORD[c.count]} {c.colour} {c.shape}s"
    if isinstance(c, RelationReq):
        return f"{c.first.noun_phrase()} {c.relation} {c.second.noun_phrase()}"
    colour = f" in {c.colour}" if c.colour else ""
    where = f" at the {c.position}" if c.position else ""
    return f"the word {c.word}{colour}{where}"


def format_caption(req: Requirements) -> str:
    text = " and ".join(format_clause(c) for c in req.clauses)
    if req.background != "white":
        text += f" on a {req.background} background"
    return text


# --- parsing -------------------------------------------------------------------------------------------------

def _quoted(options) -> str:
    return ", ".join(repr(o) for o in options)


class _Reader:
    """Recursive-descent reader over space-separated words; every failure names the word and the options."""

    def __init__(self, text: str):
        self.text = text
        self.words = text.split()
        self.i = 0

    def peek(self, ahead: int = 0) -> str | None:
        j = self.i + ahead
        return self.words[j].lower() if j < len(self.words) else None

    def fail(self, expected: str) -> CaptionError:
        if self.i < len(self.words):
            got = f"could not read {self.words[self.i]!r} (word {self.i + 1})"
        else:
            got = "the caption ended too early"
        return CaptionError(f"caption {self.text!r}: {got}; expected {expected}")

    def take(self, options, what: str) -> str:
        word = self.peek()
        if word not in options:
            raise self.fail(f"{what} ({_quoted(options)})")
        self.i += 1
        return word

    def take_phrase(self, options, what: str) -> str:
        """Longest multi-word option that matches here (e.g. 'top left' before 'top')."""
        for option in sorted(options, key=lambda o: -len(o.split())):
            parts = option.split()
            if [self.peek(k) for k in range(len(parts))] == parts:
                self.i += len(parts)
                return option
        # Blame the first word that no option continues with ("to the left a" blames "a", not "to").
        def matched(option: str) -> int:
            parts = option.split()
            return next((k for k in range(len(parts)) if self.peek(k) != parts[k]), len(parts))

        k = max(matched(o) for o in options)
        allowed = [o for o in options if matched(o) == k]
        self.i += k
        raise self.fail(f"{what} ({_quoted(allowed)})")

    def at_end(self) -> bool:
        return self.i >= len(self.words)


def _object_np(r: _Reader) -> ObjectReq:
    r.take(("a", "an"), "'a'")
    size, colour = None, r.take(SIZES + tuple(COLOURS), "a size or colour")
    if colour in SIZES:
        size, colour = colour, r.take(COLOURS, "a colour")
    shape = r.take(SHAPES, "a shape")
    return ObjectReq(colour=colour, shape=shape, size=size)


def _position(r: _Reader) -> str | None:
    if r.peek() != "at":
        return None
    r.take(("at",), "'at'")
    r.take(("the",), "'the'")
    return r.take_phrase(POSITIONS, "a position")


def _word(r: _Reader) -> str:
    raw = r.words[r.i] if r.i < len(r.words) else None
    if raw is None or not (raw.isascii() and raw.isalpha() and WORD_MIN_LEN <= len(raw) <= WORD_MAX_LEN):
        raise r.fail(f"a word of {WORD_MIN_LEN} to {WORD_MAX_LEN} letters A-Z")
    r.i += 1
    return raw.upper()


def _clause(r: _Reader) -> Clause:
    first = r.peek()
    if first == "the":
        r.take(("the",), "'the'")
        r.take(("word",), "'word'")
        word = _word(r)
        colour = None
        if r.peek() == "in":
            r.take(("in",), "'in'")
            colour = r.take(COLOURS, "a colour")
        return TextReq(word=word, colour=colour, position=_position(r))
    if first in COUNT_WORDS:
        count = COUNT_WORDS[r.take(COUNT_WORDS, "a number")]
        colour = r.take(COLOURS, "a colour")
        shape = r.take(tuple(s + "s" for s in SHAPES), "a plural shape")[:-1]
        return CountReq(count=count, colour=colour, shape=shape)
    if first in ("a", "an"):
        obj = _object_np(r)
        if r.peek() == "at":
            return ObjectReq(obj.colour, obj.shape, obj.size, _position(r))
        if r.peek() in {rel.split()[0] for rel in RELATIONS}:
            relation = r.take_phrase(RELATIONS, "a relation")
            return RelationReq(first=obj, relation=relation, second=_object_np(r))
        return obj
    raise r.fail(f"a clause starting with 'a', 'the word' or a number ({_quoted(COUNT_WORDS)})")


def parse_caption(text: str) -> Requirements:
    """Parse a caption of the grammar (docs/world.md) into its requirements, or raise ``CaptionError``.

    Grammar words are read case-insensitively and "an" is read as "a"; the rendered word is normalised to
    upper case. ``format_caption`` writes the canonical form.
    """
    if not isinstance(text, str):
        raise CaptionError(f"caption must be a string, got {type(text).__name__}")
    if not text.strip():
        raise CaptionError("caption is empty; expected e.g. 'a red circle' or 'the word CAT'")
    r = _Reader(text)
    clauses = [_clause(r)]
    background = "white"
    while not r.at_end():
        joiner = r.take(("and", "on"), "'and' followed by another clause, or 'on a black|gray background'")
        if joiner == "and":
            clauses.append(_clause(r))
            continue
        r.take(("a",), "'a'")
        background = r.take(NAMED_BACKGROUNDS, "a background colour")
        r.take(("background",), "'background'")
        if not r.at_end():
            raise r.fail("the end of the caption after the background")
    return Requirements(clauses=tuple(clauses), background=background)
