"""``t2i train vq|ar|refiner|diffusion``: check the preset and the data against each other, then hand over to
the trainers in ``tools/train``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from tools.cli.args import (Parser, UsageError, check_preset_file, existing_dir, float_in, int_at_least,
                            print_json)


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
    p.add_argument("--vq", type=existing_dir,
                   help="VQ model folder (written by 't2i train vq'); required unless --init-from, whose VQ is used")
    p.add_argument("--init-from", type=existing_dir,
                   help="warm start: a pipeline folder (e.g. checkpoints/tiny or RUN/pipeline) whose decoder weights, "
                        "VQ and caption tokenizers the run starts from, with a fresh optimizer and the preset's "
                        "schedule; its training seconds count towards the run's (unlike --resume, which continues "
                        "the same run exactly)")
    p.add_argument("--caption-tokenizer", type=existing_dir,
                   help="use this caption tokenizer folder (e.g. checkpoints/tiny/caption_tokenizer) instead of "
                        "training one on the captions, so that a diffusion baseline trained with it can be "
                        "released beside the new decoder; not with --init-from, which keeps its own")
    _add_run_arguments(p, "pipeline", codes="ar")
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
        p.add_argument("--init-from", type=existing_dir,
                       help=f"warm start: a model folder, or a release folder holding "
                            f"{'refiner' if name == 'refiner' else 'baseline'}/, whose weights the run starts from "
                            f"with a fresh optimizer and the preset's schedule; its training seconds count towards "
                            f"the run's")
        _add_run_arguments(p, "model", codes=name)
        p.set_defaults(func=cmd_train_diffusion)


CODES_HELP = {
    "ar": "codes extracted by 't2i data encode SOURCE --vq VQ'; --vq must be that tokenizer",
    "refiner": "codes and images extracted by 't2i data encode SOURCE --vq VQ --with-images'; --vq must be that "
               "tokenizer (the VQ reconstructions are decoded from the codes a batch at a time)",
    "diffusion": "images and captions kept by 't2i data encode SOURCE --vq VQ --with-images' (any VQ tokenizer of "
                 "the image size)",
}


def _add_run_arguments(p: argparse.ArgumentParser, result: str, codes: str | None = None) -> None:
    """The data, the run folder and the overrides of the preset that every trainer takes (``codes``: the
    trainer, for those that may read pre-extracted shards instead: ar, refiner, diffusion)."""
    if codes:
        p.add_argument("--codes", type=existing_dir,
                       help=f"instead of --data: {CODES_HELP[codes]}; read from disk a batch at a time, so memory "
                            "does not grow with the data")
    p.add_argument("--data", required=not codes,
                   help="training data: a folder made by 't2i data make' or 't2i data convert'; an image folder with "
                        "a metadata.jsonl of {\"file_name\", \"text\"} rows; a folder of images with same-named .txt "
                        "captions; or webdataset shards (a .tar file, a brace pattern such as "
                        "'shards/{00000..00009}.tar', a folder of .tar files; several joined by commas). Images are "
                        "converted to RGB, resized on the shorter side and centre-cropped")
    p.add_argument("--strict", action="store_true",
                   help="stop at the first unusable sample instead of skipping it (skipped samples are listed in "
                        "OUT/data.json)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--max-minutes", type=float_in("max-minutes", 0, None),
                   help=f"stop (and write the {result}) after this many minutes; 0 with --resume writes the "
                        f"{result} of OUT's checkpoint without training (to judge a run mid-way, give it a copy "
                        "of the run's folder)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    overrides = p.add_argument_group("overrides of the preset (the run records the effective one in "
                                     "OUT/preset.json)")
    overrides.add_argument("--batch-size", type=int_at_least(1), help="images per step")
    overrides.add_argument("--lr", type=float_in("lr", 0, None, open_low=True), help="peak learning rate")
    overrides.add_argument("--max-steps", type=int_at_least(1), help="training steps")
    overrides.add_argument("--num-train", type=int_at_least(1), help="use at most this many training images")
    overrides.add_argument("--image-size", type=int_at_least(8),
                           help="image side in pixels (the data is fitted to it); for 'ar' and 'refiner' it must "
                                "be the --vq tokenizer's")


def _load_preset(cls, name: str):
    check_preset_file(name)
    if name.endswith(".json"):
        return cls.from_json(name)
    return cls.from_name(name)


def _with_train_overrides(preset, args):
    """The preset with the command line's training overrides."""
    fields = {name: getattr(args, name) for name in ("batch_size", "lr", "max_steps", "num_train")
              if getattr(args, name) is not None}
    return replace(preset, train=replace(preset.train, **fields)) if fields else preset


def _with_image_size(preset, size: int | None):
    """The preset with its model's image size set (VQ tokenizer, refiner, baseline), checked by the model's config."""
    if size is None:
        return preset
    try:
        return replace(preset, model=replace(preset.model, image_size=size))
    except ValueError as e:
        raise UsageError(f"--image-size: {e}") from None


def _vq_image_size(args, vq: Path) -> int:
    """The image size of the VQ tokenizer in ``vq`` (--vq's, or that of --init-from), which --image-size, if
    given, must equal."""
    for name in ("config.json", "model.safetensors"):
        if not (vq / name).is_file():
            raise UsageError(f"--vq: {str(vq)!r} has no {name}; give the model folder written by 't2i train vq'")
    size = json.loads((vq / "config.json").read_text())["image_size"]
    if args.image_size is not None and args.image_size != size:
        raise UsageError(f"--image-size: the VQ tokenizer {str(vq)!r} takes {size} px images, got "
                         f"{args.image_size} (train a tokenizer at that size first)")
    return size


def _check_init_from(args, component: str, record_key: str) -> None:
    """--init-from names trained weights with a record of their training time: checked before any file is
    written (the trainer then checks their shape against the preset)."""
    from tools.train.init import model_folder, prior_training

    if args.init_from is None:
        return
    try:
        model_folder(args.init_from, component)
        prior_training(args.init_from, record_key)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _read_data(args, image_size: int, num: int):
    """The training images fitted to ``image_size`` and their captions; what was skipped is printed and kept in
    OUT/data.json."""
    from tools.sources import PREPROCESSING, read_images
    from vq.pretrained import write_text

    images, captions, report = read_images(args.data, image_size, num, strict=args.strict)
    args.keys = report.kept_keys  # the samples' names, for what a trainer skips later
    record = {"source": args.data, "image_size": image_size, "preprocessing": PREPROCESSING, **report.to_dict()}
    args.out.mkdir(parents=True, exist_ok=True)
    write_text(args.out / "data.json", json.dumps(record, indent=2))
    if record["skipped"]:
        reasons = ", ".join(f"{n} {why}" for why, n in record["skipped_by_reason"].items())
        print(f"skipped {record['skipped']} of {record['read']} samples ({reasons}); the list is in "
              f"{args.out / 'data.json'}", file=sys.stderr)
    return images, captions


def _open_image_shards(args, num: int, kind: str):
    """The shards of ``--codes`` for the refiner or the baseline (their first ``num`` samples), which must hold
    the images."""
    from tools.codes import CodeShards

    shards = CodeShards(args.codes, limit=num)  # its ValueErrors are one-line CLI errors, as UsageError is
    shards.require_images(f"the {'refiner' if kind == 'refiner' else 'baseline'}")
    return shards


def _check_shard_size(args, shards, size: int, what: str) -> None:
    if shards.manifest["image_size"] != size:
        raise UsageError(f"--codes: {str(args.codes)!r} holds codes of {shards.manifest['image_size']} px images "
                         f"but {what} {size} px")


def cmd_train_vq(args) -> None:
    from tools.train.config import VQPreset
    from tools.train.vq import train_vq

    preset = _with_image_size(_with_train_overrides(_load_preset(VQPreset, args.preset), args), args.image_size)
    images, _ = _read_data(args, preset.model.image_size, preset.train.num_train)
    model_dir = train_vq(preset, images, args.out, max_minutes=args.max_minutes, resume=args.resume)
    print_json({"model": str(model_dir)})


def cmd_train_ar(args) -> None:
    from tools.train.ar import train_ar
    from tools.train.config import ARPreset

    preset = _with_train_overrides(_load_preset(ARPreset, args.preset), args)
    if args.vq is None and args.init_from is None:
        raise UsageError("give --vq (the VQ tokenizer the decoder writes codes of) or --init-from (a pipeline "
                         "folder to start from, whose VQ is used)")
    if (args.data is None) == (args.codes is None):
        raise UsageError("give --data (images and captions) or --codes (made by 't2i data encode'), not both")
    tokenizer = None
    if args.caption_tokenizer is not None:
        from ar_model.text_tokenizer import CaptionTokenizer
        from vq.pretrained import CheckpointError

        if args.init_from is not None:
            raise UsageError("--caption-tokenizer: a warm start (--init-from) keeps its own caption tokenizer; "
                             "give one of them")
        try:
            tokenizer = CaptionTokenizer.from_pretrained(args.caption_tokenizer)
        except CheckpointError as e:
            raise UsageError(f"--caption-tokenizer: {e}") from None
    _check_init_from(args, "decoder", "ar")
    size = _vq_image_size(args, args.vq or args.init_from / "vq")
    images = captions = code_shards = None
    if args.codes is not None:
        from tools.codes import CodeShards

        code_shards, args.keys = CodeShards(args.codes), None
        _check_shard_size(args, code_shards, size, "the VQ tokenizer takes")
    else:
        images, captions = _read_data(args, size, preset.train.num_train)
    pipeline_dir = train_ar(preset, args.vq, images, captions, args.out, max_minutes=args.max_minutes,
                            resume=args.resume, init_from=args.init_from, keys=args.keys, strict=args.strict,
                            code_shards=code_shards, caption_tokenizer=tokenizer)
    print_json({"pipeline": str(pipeline_dir)})


def cmd_train_diffusion(args) -> None:
    """``t2i train refiner`` and ``t2i train diffusion``."""
    from tools.train.config import DiffusionPreset
    from tools.train.diffusion import COMPONENTS, baseline_conditions, refiner_conditions, train_diffusion

    kind = args.train_command  # "refiner" or "diffusion"
    check_preset_file(args.preset)
    if (args.data is None) == (args.codes is None):
        raise UsageError("give --data (images and captions) or --codes (made by 't2i data encode --with-images'), "
                         "not both")
    _check_init_from(args, COMPONENTS[kind], COMPONENTS[kind])  # its folder and training.json key
    preset = _with_train_overrides(DiffusionPreset.from_name(kind, args.preset), args)
    shards = _open_image_shards(args, preset.train.num_train, kind) if args.codes is not None else None
    if kind == "refiner":
        from vq.model import VQModel

        from tools.train.diffusion import Reconstructions

        size = _vq_image_size(args, args.vq)
        preset = _with_image_size(preset, size)
        vq = VQModel.from_pretrained(args.vq)
        if shards is not None:
            _check_shard_size(args, shards, size, "the VQ tokenizer takes")
            shards.check_tokenizer(vq)
            images, conditions = shards.images, Reconstructions(vq.float().eval(), shards.codes)
        else:
            images, captions = _read_data(args, size, preset.train.num_train)
            conditions = refiner_conditions(vq, images, args.out)
    else:
        from ar_model.text_tokenizer import CaptionTokenizer

        from tools.codes import RowSubset

        if shards is not None:
            size = shards.manifest["image_size"]
            if args.image_size is not None:
                _check_shard_size(args, shards, args.image_size, "--image-size is")
            preset = _with_image_size(preset, size)
            images, (captions, args.keys) = shards.images, shards.captions_and_keys()
        else:
            preset = _with_image_size(preset, args.image_size)
            images, captions = _read_data(args, preset.model.image_size, preset.train.num_train)
        tokenizer = CaptionTokenizer.from_pretrained(args.tokenizer)
        preset = preset.with_model(text_vocab_size=tokenizer.vocab_size)
        length = preset.model.max_caption_tokens
        try:
            conditions, kept = baseline_conditions(tokenizer, captions, length, args.out, args.keys, args.strict)
        except ValueError as e:
            raise UsageError(f"--data: {e} (the preset's max_caption_tokens is {length})") from None
        if len(kept) < len(images):
            images = RowSubset(images, kept) if shards is not None else images[kept]
    model_dir = train_diffusion(preset, images, conditions, args.out, max_minutes=args.max_minutes,
                                resume=args.resume, init_from=args.init_from)
    print_json({"model": str(model_dir)})
