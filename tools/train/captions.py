"""Training captions as token ids, with the ones the decoder cannot read skipped (or, under ``strict``, an
error): a caption over the model's token limit is never cut short, and never stops a run over one sample."""

from __future__ import annotations

import json
from pathlib import Path

from ar_model.prompt_world import PromptWorld
from ar_model.text_tokenizer import CaptionTokenizer
from tools.sources import SHOWN_SKIPS
from vq.pretrained import write_text

SCENE_GRAMMAR = "scene world (docs/world.md, t2i prompts --grammar)"
TEXT_MARKER = "the word"  # the scene world's: the word after it is drawn as text


def encode_captions(tokenizer: CaptionTokenizer, captions: list[str], keys: list[str] | None = None,
                    strict: bool = False) -> tuple[list[list[int]], list[int], list[tuple[str, str]]]:
    """(piece ids of each kept caption, the kept rows, (key, why) of each skipped one). ``keys`` name the samples
    in messages (default: their row). All skipped is an error: there would be nothing to train on."""
    pieces, kept, skipped = [], [], []
    for row, text in enumerate(captions):
        key = keys[row] if keys is not None else f"row {row}"
        try:
            pieces.append(tokenizer.encode(text))
            kept.append(row)
        except ValueError as e:
            reason = f"caption over the token limit: {e}"
            if strict:
                raise ValueError(f"sample {key!r}: {reason} (drop --strict to skip such samples)") from None
            skipped.append((key, reason))
    if not kept:
        raise ValueError(f"no training caption fits the model's {tokenizer.max_tokens} caption tokens (first: "
                         f"{skipped[0][1]}); give the preset a larger max_caption_tokens")
    return pieces, kept, skipped


def add_skips(data_json: Path, skipped: list[tuple[str, str]]) -> None:
    """Add samples skipped after reading to the run's skip report (``OUT/data.json``, written by the reader)."""
    if not skipped:
        return
    record = json.loads(data_json.read_text()) if data_json.is_file() else {"read": None, "kept": None,
                                                                             "skipped": 0, "skipped_by_reason": {},
                                                                             "skipped_samples": []}
    reason = skipped[0][1].split(":")[0]
    record["skipped"] += len(skipped)
    record["skipped_by_reason"][reason] = record["skipped_by_reason"].get(reason, 0) + len(skipped)
    if record.get("kept") is not None:
        record["kept"] -= len(skipped)
    room = max(0, SHOWN_SKIPS - len(record["skipped_samples"]))  # the counts cover them all
    record["skipped_samples"] += [{"key": k, "reason": r} for k, r in skipped[:room]]
    write_text(data_json, json.dumps(record, indent=2))


def caption_world(captions: list[str], description: str = "") -> PromptWorld:
    """What prompts a model trained on ``captions`` knows (its checkpoint's ``world.json``): their words, the
    letters of the text after "the word", and whether every caption follows the scene world's grammar (then
    ``t2i generate`` parses prompts with it, as ``t2i render`` does)."""
    from tools.world import CaptionError, parse_caption

    def parses(caption: str) -> bool:
        try:
            parse_caption(caption)
            return True
        except CaptionError:
            return False

    grammar = SCENE_GRAMMAR if captions and all(parses(c) for c in captions) else None
    return PromptWorld.from_captions(captions, text_marker=TEXT_MARKER, description=description, grammar=grammar)
