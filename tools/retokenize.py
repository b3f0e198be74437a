"""Move a trained diffusion baseline onto another caption tokenizer with the same pieces, exactly.

Every `t2i train ar` run trains its own sentencepiece model; on the same caption grammar two runs learn the same
pieces, but merge order (and so piece ids) can differ. A release bundles one caption tokenizer for the decoder
and the baseline, so a baseline trained with another run's tokenizer would read the wrong ids. When both
tokenizers hold the same pieces and segment the world's captions identically, permuting the rows of the
baseline's text embedding gives the same model under the new ids: the images it draws for a caption do not
change (checked below on real prompts, bit for bit). Anything else is refused. The guarantee is for the captions
checked, the world's grammar: BPE applies merges in id order, so two such tokenizers can still cut an unseen
string (a random run of letters, say) differently.

    python -m tools.retokenize --baseline runs/x5-baseline/model --to-tokenizer runs/NEW/caption_tokenizer \
        --out runs/NEW-baseline

reads the baseline's own tokenizer from ``runs/x5-baseline/caption_tokenizer`` (where `t2i train diffusion`
saves it), and writes ``OUT/model``, ``OUT/caption_tokenizer`` and the run's ``training.json``/``preset.json``
(the training record stays that of the run the weights came from), as a run folder for `t2i release --diffusion`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

from ar_model.text_tokenizer import CaptionTokenizer
from hybrid.baseline import DiffusionBaseline


class RetokenizeError(ValueError):
    pass


def piece_permutation(old: CaptionTokenizer, new: CaptionTokenizer) -> list[int]:
    """``perm[new_id] = old_id`` of the same piece; an error unless both hold exactly the same pieces."""
    old_ids = {old.sp.id_to_piece(i): i for i in range(old.vocab_size)}
    new_pieces = [new.sp.id_to_piece(i) for i in range(new.vocab_size)]
    if old.vocab_size != new.vocab_size or set(old_ids) != set(new_pieces):
        missing = sorted(set(new_pieces) - set(old_ids))[:5]
        raise RetokenizeError(f"the tokenizers hold different pieces ({old.vocab_size} and {new.vocab_size}; "
                              f"e.g. {missing} only in the new one): the baseline cannot be moved, retrain it")
    return [old_ids[p] for p in new_pieces]


def check_same_segmentation(old: CaptionTokenizer, new: CaptionTokenizer, prompts: list[str]) -> None:
    for prompt in prompts:
        a = [old.sp.id_to_piece(i) for i in old.encode(prompt)]
        b = [new.sp.id_to_piece(i) for i in new.encode(prompt)]
        if a != b:
            raise RetokenizeError(f"the tokenizers cut {prompt!r} differently ({a} and {b}): retrain the baseline")


def retokenize(baseline: DiffusionBaseline, perm: list[int]) -> DiffusionBaseline:
    """A copy whose text embedding row ``new_id`` is the old row of the same piece (pad and null rows kept)."""
    moved = DiffusionBaseline(baseline.config)
    moved.load_state_dict(baseline.state_dict())
    with torch.no_grad():
        weight = moved.text.embed.weight
        weight[: len(perm)] = baseline.text.embed.weight[torch.tensor(perm)]
    return moved.eval()


def same_images(old_model: DiffusionBaseline, old_tok: CaptionTokenizer, new_model: DiffusionBaseline,
                new_tok: CaptionTokenizer, prompts: list[str], steps: int = 4) -> float:
    """Max |difference| of the images both draw for ``prompts`` from the same noise (0.0 when exact)."""
    from hybrid.pipeline import DiffusionBaselinePipeline

    images = []
    for model, tok in ((old_model, old_tok), (new_model, new_tok)):
        pipe = DiffusionBaselinePipeline(tok, model)
        pipe.set_progress_bar_config(disable=True)
        out = pipe(prompts, num_inference_steps=steps, generator=torch.Generator().manual_seed(0), output_type="pt")
        images.append(out.images)
    return float((images[0].float() - images[1].float()).abs().max())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.retokenize", description=__doc__.split("\n\n")[0])
    p.add_argument("--baseline", type=Path, required=True, help="baseline model folder, e.g. runs/x5-baseline/model")
    p.add_argument("--from-tokenizer", type=Path,
                   help="the tokenizer it was trained with (default: BASELINE/../caption_tokenizer)")
    p.add_argument("--to-tokenizer", type=Path, required=True, help="the caption tokenizer to move it onto")
    p.add_argument("--check-prompts", type=int, default=200,
                   help="prompts per category whose segmentation must match (default 200)")
    p.add_argument("--out", type=Path, required=True, help="output run folder")
    args = p.parse_args(argv)
    from tools.prompts import make_prompts

    try:
        old_tok = CaptionTokenizer.from_pretrained(args.from_tokenizer or args.baseline.parent / "caption_tokenizer")
        new_tok = CaptionTokenizer.from_pretrained(args.to_tokenizer)
        baseline = DiffusionBaseline.from_pretrained(args.baseline).float().eval()
        if baseline.config.text_vocab_size != old_tok.vocab_size:
            raise RetokenizeError(f"the baseline reads {baseline.config.text_vocab_size} caption pieces but "
                                  f"--from-tokenizer has {old_tok.vocab_size}: not the tokenizer it was trained with")
        if args.out.resolve() == args.baseline.parent.resolve():
            raise RetokenizeError(f"--out {str(args.out)!r} is the baseline's own run folder; choose another")
        perm = piece_permutation(old_tok, new_tok)
        prompts = [q for words in ("train", "heldout") for q in make_prompts("all", args.check_prompts, seed=0,
                                                                             words=words)]
        check_same_segmentation(old_tok, new_tok, prompts)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    moved = retokenize(baseline, perm)
    diff = same_images(baseline, old_tok, moved, new_tok, prompts[:: max(1, len(prompts) // 8)][:8])
    if diff != 0.0:
        print(f"error: the moved baseline draws different images (max |diff| {diff})", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    moved.save_pretrained(args.out / "model")
    new_tok.save_pretrained(args.out / "caption_tokenizer")
    for name in ("training.json", "preset.json"):
        if (args.baseline.parent / name).is_file():
            shutil.copyfile(args.baseline.parent / name, args.out / name)
    print(json.dumps({"out": str(args.out), "moved_pieces": sum(i != j for i, j in enumerate(perm)),
                      "prompts_segmented_alike": len(prompts), "image_max_abs_diff": diff}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
