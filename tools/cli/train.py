"""``t2i train vq|ar|refiner|diffusion``: check the preset and the data against each other, then hand over to
the trainers in ``tools/train``."""

from __future__ import annotations

import argparse
from pathlib import Path

from tools.cli.args import Parser, UsageError, check_preset_file, existing_dir, print_json


def register(sub) -> None:
    train = sub.add_parser("train", help="train a model", description="Train a model (through accelerate).")
    train_sub = train.add_subparsers(dest="train_command", required=True, parser_class=Parser, metavar="MODEL")
    p = train_sub.add_parser("vq", help="train the VQ image tokenizer",
                             description="Train the VQ tokenizer on the train shards of --data. Writes OUT/checkpoint."
                                         "safetensors every few hundred steps (atomically), OUT/metrics.jsonl and, at "
                                         "the end, OUT/model (config.json + model.safetensors). Run it under "
                                         "'accelerate launch' for several processes.")
    p.add_argument("--preset", default="tiny",
                   help="a preset name from configs/vq (tiny, tiny-f8, ...) or a JSON file of the same form")
    _add_run_arguments(p, "model")
    p.set_defaults(func=cmd_train_vq)

    p = train_sub.add_parser("ar", help="train the autoregressive decoder",
                             description="Train the caption tokenizer and the decoder on the train shards of --data, "
                                         "with the trained VQ tokenizer --vq. Prepares OUT/tokens.safetensors and "
                                         "OUT/caption_tokenizer once, then writes OUT/checkpoint.safetensors every "
                                         "few hundred steps (atomically), OUT/metrics.jsonl and, at the end, the "
                                         "pipeline folder OUT/pipeline. Run it under 'accelerate launch' for "
                                         "several processes.")
    p.add_argument("--preset", default="tiny", help="a preset name from configs/ar (tiny, small, base) or a JSON file")
    p.add_argument("--vq", type=existing_dir, required=True, help="VQ model folder (written by 't2i train vq')")
    _add_run_arguments(p, "pipeline")
    p.set_defaults(func=cmd_train_ar)

    for name, text in (("refiner", "train the diffusion refiner (hybrid mode) on VQ reconstructions"),
                       ("diffusion", "train the diffusion-only baseline on the same captions")):
        p = train_sub.add_parser(name, help=text,
                                 description=text[0].upper() + text[1:] + ", through accelerate. Writes "
                                             "OUT/checkpoint.safetensors every few hundred steps (atomically), "
                                             "OUT/metrics.jsonl and, at the end, OUT/model.")
        p.add_argument("--preset", default="tiny", help=f"a preset name from configs/{name} or a JSON file")
        if name == "refiner":
            p.add_argument("--vq", type=existing_dir, required=True, help="VQ model folder (t2i train vq)")
        else:
            p.add_argument("--tokenizer", type=existing_dir, required=True,
                           help="caption tokenizer folder of the AR run (e.g. runs/ar-tiny/caption_tokenizer)")
        _add_run_arguments(p, "model")
        p.set_defaults(func=cmd_train_diffusion)


def _add_run_arguments(p: argparse.ArgumentParser, result: str) -> None:
    """--data, --out, --max-minutes and --resume: what every trainer takes."""
    p.add_argument("--data", type=existing_dir, required=True, help="folder made by 't2i data make'")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--max-minutes", type=float, help=f"stop (and write the {result}) after this many minutes")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")


def _load_preset(cls, name: str):
    check_preset_file(name)
    if name.endswith(".json"):
        return cls.from_json(name)
    return cls.from_name(name)


def cmd_train_vq(args) -> None:
    from tools.shards import read_split
    from tools.train.config import VQPreset
    from tools.train.vq import train_vq

    preset = _load_preset(VQPreset, args.preset)
    images, _ = read_split(args.data, "train", preset.train.num_train)
    if images.shape[-1] != preset.model.image_size:
        raise UsageError(f"--data: images are {images.shape[-1]} px but preset {args.preset!r} expects "
                         f"{preset.model.image_size} px (make the data with the same --preset)")
    model_dir = train_vq(preset, images, args.out, max_minutes=args.max_minutes, resume=args.resume)
    print_json({"model": str(model_dir)})


def cmd_train_ar(args) -> None:
    from tools.shards import read_split
    from tools.train.ar import train_ar
    from tools.train.config import ARPreset

    preset = _load_preset(ARPreset, args.preset)
    for name in ("config.json", "model.safetensors"):
        if not (args.vq / name).is_file():
            raise UsageError(f"--vq: {str(args.vq)!r} has no {name}; give the model folder written by 't2i train vq'")
    images, captions = read_split(args.data, "train", preset.train.num_train)
    pipeline_dir = train_ar(preset, args.vq, images, captions, args.out, max_minutes=args.max_minutes,
                            resume=args.resume)
    print_json({"pipeline": str(pipeline_dir)})


def cmd_train_diffusion(args) -> None:
    """``t2i train refiner`` and ``t2i train diffusion``."""
    from tools.shards import read_split
    from tools.train.config import DiffusionPreset
    from tools.train.diffusion import baseline_conditions, refiner_conditions, train_diffusion

    kind = args.train_command  # "refiner" or "diffusion"
    check_preset_file(args.preset)
    preset = DiffusionPreset.from_name(kind, args.preset)
    images, captions = read_split(args.data, "train", preset.train.num_train)
    if kind == "refiner":
        from vq.model import VQModel

        vq = VQModel.from_pretrained(args.vq)
        if vq.config.image_size != images.shape[-1]:
            raise UsageError(f"--vq: the tokenizer takes {vq.config.image_size} px images but --data holds "
                             f"{images.shape[-1]} px")
        conditions = refiner_conditions(vq, images, args.out)
    else:
        from ar_model.text_tokenizer import CaptionTokenizer

        tokenizer = CaptionTokenizer.from_pretrained(args.tokenizer)
        preset = preset.with_model(text_vocab_size=tokenizer.vocab_size)
        length = preset.model.max_caption_tokens
        try:
            conditions = baseline_conditions(tokenizer, captions, length, args.out)
        except ValueError as e:
            raise UsageError(f"--preset: training {e} (max_caption_tokens {length})") from None
    model_dir = train_diffusion(preset, images, conditions, args.out, max_minutes=args.max_minutes,
                                resume=args.resume)
    print_json({"model": str(model_dir)})
