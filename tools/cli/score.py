"""``t2i score``: judge a folder of images against their prompts, or validate the judge itself."""

from __future__ import annotations

import json

from tools.cli.args import (
    IMAGE_FORMATS, UsageError, existing_dir, existing_file, int_at_least, output_file, print_json, read_prompts,
)


def register(sub) -> None:
    p = sub.add_parser("score", help="judge images against their prompts, or validate the judge",
                       description="Judge PNG images against prompts and write a report (pass rate per category "
                                   "with 95% CI, overall, word accuracy, CER, every image's verdict) and a PNG grid "
                                   "of failures; or, with --paired A.json B.json, compare two such reports made on "
                                   "the same prompts (B - A per category and overall, with a 95% paired-bootstrap "
                                   "interval); or, with --validate, check the judge on ground-truth, mismatched "
                                   "and blurred renders.")
    p.add_argument("--images", type=existing_dir,
                   help="folder of images (.png, .jpg, .webp); sorted by name, k images per prompt in prompt order")
    p.add_argument("--prompts", type=existing_file, help="text file, one prompt per line")
    p.add_argument("--out", type=output_file(".json"), help="report JSON to write")
    p.add_argument("--failures", type=output_file(".png"), help="failure grid PNG (default: beside --out)")
    p.add_argument("--paired", nargs=2, type=existing_file, metavar=("A.json", "B.json"),
                   help="compare two reports of this command on the same prompts instead of scoring images")
    p.add_argument("--validate", action="store_true", help="validate the judge instead of scoring images")
    p.add_argument("--num", type=int_at_least(1), default=200, help="with --validate: scenes per category")
    p.add_argument("--size", type=int_at_least(48), default=64, help="with --validate: canvas side in pixels")
    p.add_argument("--seed", type=int, default=0, help="with --validate: scene seed")
    p.add_argument("--workers", type=int_at_least(1), help="with --validate: processes (default: all cores)")
    p.set_defaults(func=cmd_score)


def cmd_score(args) -> None:
    if args.validate:
        from tools.judge.validate import validate

        from tools.world import max_word_len_for

        report = validate(args.num, args.size, max_word_len_for(args.size), seed=args.seed, workers=args.workers)
        print_json(report)
        if args.out:
            from vq.pretrained import write_text

            write_text(args.out, json.dumps(report, indent=2))
        return
    if args.paired:
        _paired(args)
        return
    missing = [name for name in ("images", "prompts", "out") if getattr(args, name) is None]
    if missing:
        raise UsageError(f"--{missing[0]} is required unless --validate is given")
    _score_images(args)


def _score_images(args) -> None:
    from PIL import Image
    from tqdm.auto import tqdm

    from tools.judge.report import failure_grid, summarize
    from tools.judge.verdict import score
    from vq.pretrained import atomic_path, write_text

    prompts = read_prompts(args.prompts)
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_FORMATS)
    if not files or len(files) % len(prompts):
        raise UsageError(
            f"--images: {str(args.images)!r} holds {len(files)} PNG files; expected a positive multiple of the "
            f"{len(prompts)} prompts (images sorted by name, k per prompt in prompt order)"
        )
    per_prompt = len(files) // len(prompts)
    images, verdicts = [], []
    for i, path in enumerate(tqdm(files, desc="scoring", unit="image")):
        image = Image.open(path).convert("RGB")
        if image.width != image.height:
            raise UsageError(f"--images: {path.name} is {image.width}x{image.height}; images must be square")
        images.append(image)
        verdicts.append(score(image, prompts[i // per_prompt]))
    report = summarize(verdicts, len(prompts))
    report["images"] = [
        {"image": files[i].name, "prompt": v.caption, "category": v.category, "passed": v.passed}
        for i, v in enumerate(verdicts)
    ]
    report["failures"] = [
        {"image": files[i].name, "caption": v.caption, "reasons": list(v.reasons)}
        for i, v in enumerate(verdicts) if not v.passed
    ]
    grid = failure_grid(images, verdicts)
    failures_png = args.failures or args.out.with_name(args.out.stem + "_failures.png")
    if grid is not None:
        with atomic_path(failures_png) as tmp:
            grid.save(tmp, format="PNG")
        report["failure_grid"] = str(failures_png)
    write_text(args.out, json.dumps(report, indent=2))
    print_json({k: v for k, v in report.items() if k not in ("failures", "images")})


def _paired(args) -> None:
    from tools.judge.paired import paired_difference
    from vq.pretrained import write_text

    reports = []
    for flag_path in args.paired:
        try:
            reports.append(json.loads(flag_path.read_text()))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"--paired: {str(flag_path)!r} is not a JSON report of t2i score ({e})") from None
    try:
        result = paired_difference(*reports)
    except (KeyError, TypeError) as e:
        raise UsageError(f"--paired: {str(args.paired[0])!r} or {str(args.paired[1])!r} is not a report of "
                         f"t2i score (missing {e})") from None
    except ValueError as e:
        raise UsageError(f"--paired: {e}") from None
    result["a"], result["b"] = str(args.paired[0]), str(args.paired[1])
    if args.out:
        write_text(args.out, json.dumps(result, indent=2))
    print_json(result)
