"""What prompts a checkpoint knows: the words of the captions it was trained on, recorded in the checkpoint's
``world.json`` (``PromptWorld``), so that a prompt full of words the model never read is said, not silently
turned into blobs.

A caption world may name a *text marker* (the scene world's "the word"): the word after it is text to draw,
spelled letter by letter by the caption tokenizer, so it is checked by its letters, not looked up, and it is
upper-cased (the case the model was trained on). The other words are compared without case when the training
captions were all lower-case. A checkpoint without ``world.json`` (made before this file existed) checks nothing.
"""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from vq.pretrained import CheckpointError, write_text

WORLD_NAME = "world.json"
_WORD = re.compile(r"[A-Za-z0-9']+|[^\sA-Za-z0-9']")


class UnknownPromptWarning(UserWarning):
    """A prompt has a word the checkpoint's training captions never had (``strict=True`` makes it an error)."""


def _words(text: str) -> list[str]:
    return _WORD.findall(text)


def _marked_indices(tokens: list[str], marker: list[str]) -> set[int]:
    """Indices of the tokens that follow ``marker`` (its words, lower-case): the text to draw."""
    n = len(marker)
    return {i for i in range(n, len(tokens)) if n and [t.lower() for t in tokens[i - n:i]] == marker}


@dataclass(frozen=True)
class PromptWorld:
    words: tuple[str, ...]  # every word of the training captions (lower-cased when ``lowercase``), sorted
    lowercase: bool = True  # the training captions had no upper-case letter outside the marked text
    text_marker: str | None = None  # e.g. "the word": the word after it is text to draw
    letters: str = ""  # the characters the marked text was made of
    description: str = ""  # where the world comes from, e.g. the training data
    grammar: str | None = None  # a grammar every training caption followed, e.g. "scene world" (docs/world.md)

    @classmethod
    def from_captions(cls, captions: Iterable[str], text_marker: str | None = None, description: str = "",
                      grammar: str | None = None) -> "PromptWorld":
        """The world of ``captions``: their words, and (with ``text_marker``) the letters of the marked text."""
        words, letters, lowercase = set(), set(), True
        marker = _words(text_marker) if text_marker else []
        for caption in captions:
            tokens = _words(caption)
            marked = _marked_indices(tokens, marker)
            for i, token in enumerate(tokens):
                if i in marked:
                    letters.update(token)
                    continue
                lowercase = lowercase and token == token.lower()
                words.add(token)
        if lowercase:
            words = {w.lower() for w in words}
        return cls(tuple(sorted(words)), lowercase, text_marker, "".join(sorted(letters)), description, grammar)

    # --- files -----------------------------------------------------------------------------------------------
    def save_pretrained(self, folder: str | Path) -> None:
        write_text(Path(folder) / WORLD_NAME, json.dumps(asdict(self), indent=2))

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "PromptWorld | None":
        """The world of a checkpoint folder; None when it has no world.json."""
        file = Path(folder) / WORLD_NAME
        if not file.is_file():
            return None
        try:
            data = json.loads(file.read_text())
            return cls(words=tuple(data["words"]), lowercase=bool(data["lowercase"]),
                       text_marker=data.get("text_marker"), letters=str(data.get("letters", "")),
                       description=str(data.get("description", "")), grammar=data.get("grammar"))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"{file} is not a valid world record ({e})") from None

    # --- prompts ---------------------------------------------------------------------------------------------
    def _marked(self, tokens: list[str]) -> set[int]:
        """Indices of the tokens that are marked text."""
        return _marked_indices(tokens, _words(self.text_marker) if self.text_marker else [])

    def normalize(self, prompt: str) -> str:
        """The prompt as the training captions were written: marked text upper-cased, the other words lower-cased
        when the captions were all lower-case (so "THE WORD cat" reads as "the word CAT")."""
        if not self.text_marker and not self.lowercase:
            return prompt
        parts = re.split(r"(\s+)", prompt)
        tokens = [p for p in parts if p and not p.isspace()]
        marked, out, k = self._marked(tokens), [], 0
        for part in parts:
            if part and not part.isspace():
                part = part.upper() if k in marked else (part.lower() if self.lowercase else part)
                k += 1
            out.append(part)
        return "".join(out)

    def problem(self, prompt: str) -> str | None:
        """Why the checkpoint does not know ``prompt`` (its first unknown word and what is allowed), or None."""
        tokens = _words(self.normalize(prompt))
        known, marked = set(self.words), self._marked(tokens)
        for i, token in enumerate(tokens):
            if i in marked:
                bad = sorted(set(token) - set(self.letters))
                if bad:
                    return (f"prompt {prompt!r}: the text {token!r} (word {i + 1}) has {''.join(bad)!r}, which the "
                            f"training text never had; allowed characters: {self.letters!r}")
            elif token not in known:
                shown = ", ".join(repr(w) for w in self.words[:60]) + (", ..." if len(self.words) > 60 else "")
                marker = f"; text to draw follows {self.text_marker!r}" if self.text_marker else ""
                return (f"prompt {prompt!r}: the checkpoint never saw {token!r} (word {i + 1}) in its training "
                        f"captions{marker}; known words: {shown}")
        return None

    def check(self, prompts: list[str], strict: bool = False, stacklevel: int = 3) -> None:
        """Warn once per prompt the checkpoint does not know (``strict``: raise ValueError for the first)."""
        for prompt in prompts:
            problem = self.problem(prompt)
            if problem is None:
                continue
            if strict:
                raise ValueError(f"{problem} (strict=True)")
            warnings.warn(f"{problem}; the image will likely not follow it (strict=True, or t2i generate --strict, "
                          "makes this an error)",
                          UnknownPromptWarning, stacklevel=stacklevel)


def known_prompts(world: PromptWorld | None, prompts: list[str], strict: bool = False) -> list[str]:
    """What every pipeline does with its prompts first: normalise them and check them against ``world``."""
    if world is None:
        return prompts
    prompts = [world.normalize(p) for p in prompts]
    world.check(prompts, strict, stacklevel=5)
    return prompts
