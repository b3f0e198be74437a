"""The caption grammar as text, built from the vocabulary it names (``tools.world.vocab``), so that what
``t2i prompts --grammar`` prints and ``docs/world.md`` shows is what ``parse_caption`` reads."""

from __future__ import annotations

from tools.world.vocab import COLOURS, COUNT_WORDS, NAMED_BACKGROUNDS, POSITIONS, RELATIONS, SHAPES, SIZES, \
    WORD_MAX_LEN, WORD_MIN_LEN


def _choice(words) -> str:
    return " | ".join(f'"{w}"' for w in words)


def grammar_text(max_word_len: int = WORD_MAX_LEN) -> str:
    """The grammar in EBNF-like lines: quoted text is literal, [x] is optional, (x)* repeats."""
    rules = [
        ("caption", f'clause (" and " clause)* [" on a " ({_choice(NAMED_BACKGROUNDS)}) " background"]'),
        ("clause", "object | count | relation | text"),
        ("object", '"a " [size " "] colour " " shape [" at the " position]'),
        ("count", f'({_choice(COUNT_WORDS)}) " " colour " " shape "s"'),
        ("relation", 'object_np " " relation_word " " object_np'),
        ("object_np", '"a " [size " "] colour " " shape'),
        ("text", '"the word " WORD [" in " colour] [" at the " position]'),
        ("size", _choice(SIZES)),
        ("colour", _choice(COLOURS)),
        ("shape", _choice(SHAPES)),
        ("position", _choice(POSITIONS)),
        ("relation_word", _choice(RELATIONS)),
        ("WORD", f"{WORD_MIN_LEN} to {max_word_len} capital letters A-Z"),
    ]
    width = max(len(name) for name, _ in rules)
    return "\n".join(f"{name.ljust(width)} := {rule}" for name, rule in rules)
