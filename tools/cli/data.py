"""``t2i data make|inspect|convert|encode|digits``: data sets of rendered scenes, a look at (or a copy of) one's own, and
an outside data set that ships inside scikit-learn."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tools.cli.args import Parser, UsageError, int_at_least, print_json
from tools.world.config import PRESETS
from tools.world.vocab import CATEGORIES

SOURCE_HELP = ("an image folder with a metadata.jsonl of {\"file_name\", \"text\"} rows; a folder of images with "
               "same-named .txt captions; webdataset shards (a .tar file, a brace pattern such as "
               "'shards/{00000..00009}.tar', a folder of .tar files; several joined by commas); or a folder made "
               "by 't2i data make'")


def category_weights(text: str) -> dict[str, float]:
    """'text=3,text_layout=3' -> {'text': 3.0, 'text_layout': 3.0}, every name a category, every weight >= 0."""
    weights = {}
    for item in (part.strip() for part in text.split(",")):
        name, sep, value = item.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = None
        if not sep or name not in CATEGORIES or weight is None or not weight >= 0 or name in weights:
            raise argparse.ArgumentTypeError(
                f"expected CATEGORY=WEIGHT pairs, each category once, weights >= 0, categories from "
                f"{', '.join(CATEGORIES)}; got {item!r} in {text!r}")
        weights[name] = weight
    if sum(weights.get(c, 1.0) for c in CATEGORIES) <= 0:
        raise argparse.ArgumentTypeError(f"the weights must not all be 0, got {text!r}")
    return weights


def register(sub) -> None:
    data = sub.add_parser("data", help="make, inspect or convert data sets",
                          description="Make data sets of rendered scenes, or inspect and convert your own.")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=Parser, metavar="ACTION")
    p = data_sub.add_parser("make", help="write scenes as webdataset tar shards",
                            description="Write NUM scenes (png + caption txt + scene json) as webdataset shards "
                                        "and a manifest SPLIT.json in OUT; every file is written atomically.")
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="image size and word length (default: tiny)")
    p.add_argument("--num", type=int_at_least(1), required=True, help="number of scenes")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    p.add_argument("--split", choices=("train", "heldout"), default="train",
                   help="train: training words; heldout: the held-out words, never in training (default: train)")
    p.add_argument("--shard-size", type=int_at_least(1), default=1000, help="scenes per shard (default: 1000)")
    p.add_argument("--category-weights", type=category_weights, default=None, metavar="CAT=W,...",
                   help="draw some categories more often: relative weights, e.g. 'text=3,text_layout=3' makes "
                        "half the scenes text ones; unnamed categories weigh 1 (default: all eight equally). "
                        f"Categories: {', '.join(CATEGORIES)}")
    p.set_defaults(func=cmd_data_make)

    p = data_sub.add_parser("inspect", help="count a data source's samples, sizes, captions and skips",
                            description="Read a data source as the trainers would and print, as JSON, its kind, "
                                        "how many samples it holds and how many training would skip (with each "
                                        "skipped key and why), its image sizes and modes, and caption lengths.")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--strict", action="store_true", help="stop at the first unusable sample")
    p.set_defaults(func=cmd_data_inspect)

    p = data_sub.add_parser("convert", help="write a data source as training shards",
                            description="Fit every usable image of SOURCE to --image-size (RGB, shorter side "
                                        "resized, centre crop) and write them with their captions as png + txt "
                                        "webdataset shards and a manifest train.json (written last, with the skip "
                                        "report) in OUT, for 't2i train ... --data OUT'.")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--image-size", type=int_at_least(8), required=True, help="image side in pixels")
    p.add_argument("--shard-size", type=int_at_least(1), default=1000, help="images per shard (default: 1000)")
    p.add_argument("--strict", action="store_true", help="stop at the first unusable sample")
    p.set_defaults(func=cmd_data_convert)

    p = data_sub.add_parser("encode", help="extract a data source's VQ codes once, for training the decoder",
                            description="Stream every usable image of SOURCE through the VQ tokenizer --vq, a batch "
                                        "at a time, and write the codes as shards (codes-N.npy, int16, one row "
                                        "of h*w codes per image; captions-N.jsonl) and OUT/codes.json (last, "
                                        "with the tokenizer's digest and the skip report), for 't2i train ar "
                                        "--codes OUT': the trainer then reads each batch's rows from disk, so its "
                                        "memory does not grow with the data. With --with-images the fitted images "
                                        "are kept too (images-N.npy, uint8), for 't2i train refiner --codes' and "
                                        "'t2i train diffusion --codes'.")
    p.add_argument("source", help=SOURCE_HELP)
    p.add_argument("--vq", type=Path, required=True, help="VQ model folder (t2i train vq)")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--num", type=int_at_least(1), help="encode at most this many images (default: all)")
    p.add_argument("--shard-size", type=int_at_least(1), default=10_000, help="images per shard (default: 10000)")
    p.add_argument("--with-images", action="store_true",
                   help="also keep the images, fitted to the tokenizer's size, for the refiner and the baseline "
                        "(3 * S * S bytes an image: 12 kB at 64 px)")
    p.add_argument("--strict", action="store_true", help="stop at the first unusable sample")
    p.set_defaults(func=cmd_data_encode)

    p = data_sub.add_parser("digits", help="write scikit-learn's handwritten digits as an image folder",
                            description="Write the 1,797 8x8 handwritten digits that ship with scikit-learn (no "
                                        "download) as two image folders, OUT/train and OUT/test (a fixed 80/20 "
                                        "split), each with 8x8 PNGs and a metadata.jsonl of {\"file_name\", "
                                        "\"text\", \"label\"} rows captioned 'a handwritten digit three': an "
                                        "outside data set for 't2i train ... --data OUT/train', judged by "
                                        "'t2i eval digits'. Needs scikit-learn (in the test extras).")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.set_defaults(func=cmd_data_digits)


def cmd_data_make(args) -> None:
    from tools.shards import make_shards
    from tools.world.config import WorldConfig

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = make_shards(args.out, args.num, WorldConfig.from_preset(args.preset), seed=args.seed,
                           split=args.split, shard_size=args.shard_size, category_weights=args.category_weights)
    print_json({"manifest": str(manifest), **json.loads(manifest.read_text())})


def cmd_data_inspect(args) -> None:
    from tools.sources import inspect_source

    print_json(inspect_source(args.source, strict=args.strict))


def cmd_data_convert(args) -> None:
    from tools.sources import convert_source

    manifest = convert_source(args.source, args.out, args.image_size, args.shard_size, strict=args.strict)
    record = json.loads(manifest.read_text())
    print_json({"manifest": str(manifest), "num": record["num"], "shards": len(record["shards"]),
                "skipped": record["report"]["skipped"]})


def cmd_data_encode(args) -> None:
    from tools.codes import encode_source
    from vq.model import VQModel
    from vq.pretrained import CheckpointError

    try:
        vq = VQModel.from_pretrained(args.vq).float().eval()
    except CheckpointError as e:
        raise UsageError(f"--vq: {e}") from None
    manifest = json.loads(encode_source(args.source, vq, args.out, args.num, args.shard_size,
                                        strict=args.strict, with_images=args.with_images).read_text())
    print_json({"manifest": str(args.out / "codes.json"), "num": manifest["num"], "shards": len(manifest["shards"]),
                "skipped": manifest["report"]["skipped"]})


def cmd_data_digits(args) -> None:
    from tools.digits import SPLITS, write_digits

    print_json({split: write_digits(args.out / split, split) for split in SPLITS})
