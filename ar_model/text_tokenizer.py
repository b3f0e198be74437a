"""The caption tokenizer: sentencepiece (BPE, byte fallback) trained on the world's captions.

Rendered words reach the model letter by letter: before encoding, every run of two or more upper-case letters
is spelled out ("the word CAT" -> "the word C A T"), and so is text in double quotes, whatever its case, each
of its words between quote marks of its own (a sign that says "Open now" -> a sign that says " O p e n " " n o
w "), so a word never seen in training is spelled with the same pieces as the ones that were; each "▁A" ...
"▁Z" is a piece of its own. Normalisation is documented and
checked, never silent: surrounding blanks are stripped and inner runs of blanks become one space; an empty
prompt, a character outside printable ASCII, or a prompt longer than ``max_tokens`` pieces is an error.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import sentencepiece as spm

from vq.pretrained import CheckpointError, atomic_path, write_text

MODEL_NAME = "spiece.model"
CONFIG_NAME = "tokenizer_config.json"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_UPPER_RUN = re.compile(r"[A-Z]{2,}")
_QUOTED = re.compile(r'"([^"]*)"')
# Pieces sentencepiece needs besides one per distinct character: 256 byte pieces (byte fallback), unk, and
# the 26 letter pieces.
_FIXED_PIECES = 256 + 1 + len(LETTERS)
_LETTER_PIECE = re.compile("\u2581[A-Z]")


def spell_words(text: str) -> str:
    """'the word CAT' -> 'the word C A T'; 'says "Hi there"' -> 'says " H i " " t h e r e "'."""
    parts = _QUOTED.split(text)  # odd indices: the text between a pair of quote marks
    return "".join(" ".join(f'" {" ".join(word)} "' for word in part.split()) if i % 2
                   else _UPPER_RUN.sub(lambda m: " ".join(m.group()), part) for i, part in enumerate(parts))


def min_vocab_size(captions: Iterable[str]) -> int:
    """The smallest vocabulary sentencepiece can train on these captions: the fixed pieces and one piece per
    distinct character of the spelled captions outside the letter pieces (the word-start mark included)."""
    chars = set()
    for caption in captions:
        chars.update(_LETTER_PIECE.sub("", "\u2581" + "\u2581".join(spell_words(caption).split())))
    return _FIXED_PIECES + len(chars)


class CaptionTokenizer:
    def __init__(self, model_proto: bytes, max_tokens: int):
        self.model_proto = model_proto
        self.max_tokens = max_tokens
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)

    @property
    def vocab_size(self) -> int:
        return self.sp.get_piece_size()

    @classmethod
    def train(cls, captions: Iterable[str], vocab_size: int, max_tokens: int) -> "CaptionTokenizer":
        """Train on ``captions``. A ``vocab_size`` below what they need (``min_vocab_size``: one piece per
        distinct character besides the fixed pieces) is raised to that minimum, with a warning that says so."""
        captions = list(captions)
        needed = min_vocab_size(captions)
        if vocab_size < needed:
            warnings.warn(f"caption tokenizer: vocab_size {vocab_size} is too small for these captions; using "
                          f"{needed}, the minimum ({_FIXED_PIECES} fixed pieces and {needed - _FIXED_PIECES} "
                          f"distinct characters)", stacklevel=2)
            vocab_size = needed
        buf = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=(spell_words(c) for c in captions), model_writer=buf, vocab_size=vocab_size,
            model_type="bpe", byte_fallback=True, character_coverage=1.0,
            unk_id=0, bos_id=-1, eos_id=-1, pad_id=-1,  # our specials live in the decoder's vocabulary
            user_defined_symbols=[f"\u2581{c}" for c in LETTERS],
            hard_vocab_limit=False, num_threads=1, minloglevel=2,
        )
        return cls(buf.getvalue(), max_tokens)

    def normalize(self, text: str) -> str:
        if not isinstance(text, str):
            raise ValueError(f"prompt must be a string, got {type(text).__name__}")
        for i, ch in enumerate(text):
            if not (" " <= ch <= "~" or ch in "\t\n\r"):
                raise ValueError(f"prompt {text!r}: character {ch!r} at position {i} is not allowed; prompts are "
                                 "printable ASCII (letters, digits, punctuation, spaces)")
        text = " ".join(text.split())
        if not text:
            raise ValueError("prompt is empty; give a caption such as 'a red circle'")
        return text

    def encode(self, text: str) -> list[int]:
        """A prompt -> piece ids (at most ``max_tokens``; a longer prompt is an error, never cut)."""
        ids = self.sp.encode(spell_words(self.normalize(text)))
        if len(ids) > self.max_tokens:
            raise ValueError(f"prompt {text[:60]!r}{'...' if len(text) > 60 else ''} is {len(ids)} tokens long; "
                             f"the model reads at most {self.max_tokens}")
        return ids

    def decode(self, ids: list[int]) -> str:
        return self.sp.decode(ids)

    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with atomic_path(path / MODEL_NAME) as tmp:
            tmp.write_bytes(self.model_proto)
        write_text(path / CONFIG_NAME, json.dumps({"max_tokens": self.max_tokens, "vocab_size": self.vocab_size},
                                                  indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "CaptionTokenizer":
        path = Path(path)
        for name in (MODEL_NAME, CONFIG_NAME):
            if not (path / name).is_file():
                raise CheckpointError(f"caption tokenizer {str(path)!r} has no {name}")
        try:
            config = json.loads((path / CONFIG_NAME).read_text())
            tokenizer = cls((path / MODEL_NAME).read_bytes(), int(config["max_tokens"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
            raise CheckpointError(f"caption tokenizer {str(path)!r}: {CONFIG_NAME} is not valid ({e})") from None
        except RuntimeError as e:  # sentencepiece's message for a corrupt model file
            raise CheckpointError(f"{path / MODEL_NAME} is not a sentencepiece model ({e})") from None
        if tokenizer.vocab_size != config.get("vocab_size"):
            raise CheckpointError(f"{path / MODEL_NAME} has {tokenizer.vocab_size} pieces but {CONFIG_NAME} says "
                                  f"{config.get('vocab_size')}")
        return tokenizer
