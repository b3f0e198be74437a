"""``t2i eval ar``: the quick, repeatable proxy of how well a decoder follows its prompt.

Two numbers, both on scenes no training run has seen:

- *Position sensitivity*, teacher-forced: for single-object "position" scenes, the log-likelihood of the scene's
  VQ codes under its true caption against the same caption with only the position changed (all 8 other cells).
  A decoder that ignores the position scores about 0 nats and picks the true cell 1 time in 9.
- The judge's pass rate per category on a few generated prompts per category.

Asked for (``--colour-scenes``), *colour-binding sensitivity*, the same measure for "a red circle and a blue
square" scenes against the caption with the colours swapped between the shapes (chance 1/2): does the decoder
bind each colour to its shape, or only read which colours occur?

And, asked for (``--word-scenes``), *word sensitivity*, the same measure for text: "the word W" scenes against the
same caption with W swapped for 8 other words of its length. It tells a decoder that does not read the letters
from one that reads them but cannot yet draw them.
"""

from __future__ import annotations

import dataclasses
import math
import random
import time

import torch
from tqdm.auto import tqdm

from ar_model.layout import image_layout
from ar_model.pipeline import TextToImage
from ar_model.pipeline_utils import pil_to_pixels
from ar_model.sequence import caption_prefixes, null_prefixes, training_sequences
from tools.judge import score
from tools.judge.report import summarize, wilson_interval
from tools.prompts import make_prompts
from tools.shards import scene_seed
from tools.world import Requirements, format_caption, render_any_size, sample_scene
from tools.world.config import max_word_len_for
from tools.world.scene import SamplingOptions
from tools.world.vocab import POSITIONS
from tools.world.words import word_list

VARIANTS = 9  # the true caption and 8 others, as for positions


def position_variants(seed: int, index: int) -> tuple[object, list[str], int]:
    """Fresh single-object position scene ``index`` -> (scene, its caption with each of the 9 positions, the index
    of the true one). Its own seed namespace keeps it apart from training scenes and prompts."""
    scene = sample_scene(scene_seed(seed, "eval-position", index), "position")
    (obj,) = scene.requirements.clauses
    captions = [format_caption(Requirements((dataclasses.replace(obj, position=p),), scene.background))
                for p in POSITIONS]
    return scene, captions, POSITIONS.index(obj.position)


@torch.no_grad()
def code_logits(pipe: TextToImage, captions: list[str] | None, codes: torch.Tensor) -> torch.Tensor:
    """Teacher-forced logits over the codebook at each image code: captions N strings (None: the null caption
    for all), codes (N, image_tokens) -> (N, image_tokens, codebook_size), on the pipeline's device."""
    c = pipe.decoder.config
    window = torch.tensor(image_layout(c).code_positions) - 1  # the position that predicts each code
    codes = codes.to(pipe.device)
    if captions is None:
        prefixes = null_prefixes(c, len(codes))
    else:
        prefixes = caption_prefixes(c, [pipe.caption_tokenizer.encode(t) for t in captions])
    seq = training_sequences(c, prefixes.to(pipe.device), codes)
    return pipe.decoder(seq[:, :-1])[:, window, c.image_offset:c.image_offset + c.codebook_size]


def code_log_likelihood(pipe: TextToImage, captions: list[str] | None, codes: torch.Tensor,
                        batch_size: int = 64) -> torch.Tensor:
    """Teacher-forced log p(codes | caption), summed over the image codes, each code's softmax over the codebook
    (what decoding chooses among). captions: N strings (None: the null caption for all), codes
    (N, image_tokens) -> (N,) nats."""
    out = []
    for start in range(0, len(codes), batch_size):
        block = codes[start:start + batch_size].to(pipe.device)
        logits = code_logits(pipe, None if captions is None else captions[start:start + batch_size], block)
        out.append(logits.log_softmax(-1).gather(-1, block[..., None]).squeeze(-1).sum(-1).cpu())
    return torch.cat(out)


def word_variants(seed: int, index: int, words: str, max_len: int) -> tuple[object, list[str], int]:
    """Fresh "the word W" scene ``index`` (W from the ``words`` list) -> (scene, its caption with W and with 8 other
    words of W's length from either list, the index of the true one), in a seed namespace of its own."""
    scene = sample_scene(scene_seed(seed, f"eval-word-{words}", index), "text", SamplingOptions(words, max_len))
    (text,) = scene.requirements.clauses
    pool = word_list("train", max_len) + word_list("heldout", max_len)
    same_length = [w for w in pool if len(w) == len(text.word) and w != text.word]
    others = random.Random(scene_seed(seed, f"eval-word-swap-{words}", index)).sample(same_length, VARIANTS - 1)
    truth = index % VARIANTS
    choices = others[:truth] + [text.word] + others[truth:]
    captions = [format_caption(Requirements((dataclasses.replace(text, word=w),), scene.background)) for w in choices]
    return scene, captions, truth


def colour_variants(seed: int, index: int) -> tuple[object, list[str], int]:
    """Fresh colour-attribution scene ``index`` ("a red circle and a blue square": two colours, two shapes) ->
    (scene, its caption and the same caption with the two colours swapped between the shapes, the index of the
    true one), in a seed namespace of its own. Both captions name the same colours and shapes; only the binding
    differs, so a decoder that does not bind scores a gap of about 0."""
    scene = sample_scene(scene_seed(seed, "eval-colour", index), "colour_attribution")
    truth = index % 2  # the true caption first for even scenes, second for odd: no order to learn
    pair = [scene.requirements, swap_colours(scene.requirements)][::1 if truth == 0 else -1]
    return scene, [format_caption(r) for r in pair], truth


def swap_colours(req: Requirements) -> Requirements:
    """A two-object caption's requirements with the colours swapped between the shapes."""
    a, b = req.clauses
    return dataclasses.replace(req, clauses=(dataclasses.replace(a, colour=b.colour),
                                             dataclasses.replace(b, colour=a.colour)))


def position_sensitivity(pipe: TextToImage, num_scenes: int = 200, seed: int = 0, progress: bool = True) -> dict:
    """Mean gap (nats) between the true caption's log-likelihood and the mean over the 8 wrong positions; how often
    the true position is the most likely of the 9 (chance 1/9); both with a 95% interval over scenes."""
    report = _sensitivity(pipe, [position_variants(seed, i) for i in range(num_scenes)], "position", progress)
    return {"num_scenes": num_scenes, **report}


def word_sensitivity(pipe: TextToImage, num_scenes: int = 100, seed: int = 0, words: str = "train",
                     progress: bool = True) -> dict:
    """As ``position_sensitivity``, for the word of "the word W" scenes (``words``: the training or held-out
    list, words of the length the checkpoint's size draws): does the decoder read the letters?"""
    max_len = max_word_len_for(pipe.vq.config.image_size)
    variants = [word_variants(seed, i, words, max_len) for i in range(num_scenes)]
    return {"num_scenes": num_scenes, "words": words, **_sensitivity(pipe, variants, "word", progress)}


def colour_binding_sensitivity(pipe: TextToImage, num_scenes: int = 100, seed: int = 0,
                               progress: bool = True) -> dict:
    """As ``position_sensitivity``, for the colour binding of two-object scenes: the true caption against the same
    caption with the colours swapped between the shapes (chance top-1 1/2)."""
    variants = [colour_variants(seed, i) for i in range(num_scenes)]
    return {"num_scenes": num_scenes, **_sensitivity(pipe, variants, "binding", progress)}


def _sensitivity(pipe: TextToImage, variants: list, what: str, progress: bool) -> dict:
    size = pipe.vq.config.image_size
    gaps, hits = [], []
    for scene, captions, truth in tqdm(variants, desc=f"{what} sensitivity", disable=not progress):
        pixels = pil_to_pixels([render_any_size(scene, size)], pipe.device).to(pipe.dtype)
        codes = pipe.vq.encode(pixels).flatten(1).cpu()
        ll = code_log_likelihood(pipe, captions, codes.expand(len(captions), -1)).float()
        gaps.append((ll[truth] - torch.cat([ll[:truth], ll[truth + 1:]]).mean()).item())
        hits.append(bool(ll.argmax() == truth))
    gaps_t = torch.tensor(gaps)
    half = 1.96 * gaps_t.std().item() / len(gaps) ** 0.5 if len(gaps) > 1 else 0.0
    lo, hi = wilson_interval(sum(hits), len(hits))
    return {"mean_gap_nats": round(gaps_t.mean().item(), 3),
            "gap_ci95": [round(gaps_t.mean().item() - half, 3), round(gaps_t.mean().item() + half, 3)],
            f"true_{what}_top1": round(sum(hits) / len(hits), 4), "top1_ci95": [round(lo, 4), round(hi, 4)],
            "chance_top1": round(1 / len(variants[0][1]), 4)}


def judge_proxy(pipe: TextToImage, prompts_per_category: int = 10, seed: int = 0, batch_size: int = 8,
                generator_seed: int = 0, **sampling) -> dict:
    """Generate one image per prompt (``prompts_per_category`` of each category) and judge it."""
    prompts = make_prompts("all", prompts_per_category, seed)
    images = []
    for start in range(0, len(prompts), batch_size):
        chunk = prompts[start:start + batch_size]
        gens = [torch.Generator().manual_seed(generator_seed + start + i) for i in range(len(chunk))]
        images += pipe(chunk, generator=gens, **sampling).images
    verdicts = [score(im, p) for im, p in zip(images, prompts)]
    return summarize(verdicts, len(prompts))


def evaluate_ar(pipe: TextToImage, num_scenes: int = 200, prompts_per_category: int = 10, seed: int = 0,
                progress: bool = True, word_scenes: int = 0, colour_scenes: int = 0, **sampling) -> dict:
    start = time.monotonic()
    report = {"position_sensitivity": position_sensitivity(pipe, num_scenes, seed, progress)}
    if colour_scenes:
        report["colour_binding_sensitivity"] = colour_binding_sensitivity(pipe, colour_scenes, seed, progress)
    if word_scenes:
        report["word_sensitivity"] = {which: word_sensitivity(pipe, word_scenes, seed, which, progress)
                                      for which in ("train", "heldout")}
    if prompts_per_category:
        report["judge"] = judge_proxy(pipe, prompts_per_category, seed, **sampling)
        report["sampling"] = sampling
    report["seconds"] = round(time.monotonic() - start, 1)
    return report


def heldout_loss(pipe: TextToImage, images: torch.Tensor, captions: list[str], batch_size: int = 64) -> dict:
    from tools.train.ar import encode_images

    """Held-out loss for data the judge cannot score: teacher-forced bits per image code under each image's
    caption (with a 95% interval over images) and under the null caption, and their difference per image (the
    null caption is trained on only ``caption_dropout`` of the samples, so the difference also holds how much
    less the unconditional model has learned; it is no mutual information). images: uint8 (N, 3, S, S)."""
    c = pipe.decoder.config
    codes = encode_images(pipe.vq, images, batch_size, progress=False).long()
    per_code = {}
    for name, caps in (("caption", captions), ("null_caption", None)):
        bits = -code_log_likelihood(pipe, caps, codes, batch_size) / c.image_tokens / math.log(2)  # (N,)
        half = 1.96 * bits.std().item() / len(bits) ** 0.5 if len(bits) > 1 else 0.0
        per_code[name] = (bits.mean().item(), half)
    (cond, cond_half), (null, _) = per_code["caption"], per_code["null_caption"]
    return {"num_images": len(images), "image_codes": c.image_tokens,
            "bits_per_image_code": round(cond, 4), "bits_per_image_code_ci95": [round(cond - cond_half, 4),
                                                                              round(cond + cond_half, 4)],
            "bits_per_image_code_null_caption": round(null, 4),
            "null_minus_caption_bits_per_image": round((null - cond) * c.image_tokens, 2)}
