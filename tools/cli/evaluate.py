"""``t2i eval vq|ar|loss|digits|refiner``: evaluate a trained model on fresh scenes (or, for ``digits``, with an
outside judge) and print the report as JSON."""

from __future__ import annotations

import json
from pathlib import Path

from tools.cli.args import (
    Parser, UsageError, add_checkpoint_argument, add_device_arguments, add_sampling_arguments, device_and_dtype,
    existing_dir, int_at_least, load_pipeline, number_list, output_file, print_json, sampling_kwargs,
)


def register(sub) -> None:
    evaluate = sub.add_parser("eval", help="evaluate a model", description="Evaluate a trained model; prints JSON.")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True, parser_class=Parser, metavar="MODEL")
    p = eval_sub.add_parser("vq", help="evaluate the VQ tokenizer on fresh scenes",
                            description="Encode and decode NUM fresh scenes: PSNR, codebook usage and perplexity, "
                                        "tokens per image, and the judge's pass rate per category on the "
                                        "reconstructions next to the originals. Writes an original | "
                                        "reconstruction PNG grid.")
    p.add_argument("--checkpoint", type=existing_dir, required=True, help="a folder written by save_pretrained")
    add_device_arguments(p)
    p.add_argument("--data", help="evaluate on this data source instead of fresh scenes (any data the trainers "
                                  "read: image folder, image + .txt pairs, shards): PSNR, SSIM, codebook usage "
                                  "and the grid, no judge")
    p.add_argument("--num", type=int_at_least(1), default=500, help="scenes or images (default: 500)")
    p.add_argument("--size", type=int_at_least(48), help="image size; must match the tokenizer's")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default: 0)")
    p.add_argument("--workers", type=int_at_least(1), help="judge processes (default: all cores)")
    p.add_argument("--out", type=output_file(".json"), help="also write the JSON here")
    p.add_argument("--grid", type=output_file(".png"),
                   help=_grid_help("original | reconstruction grid", "vq_reconstructions.png"))
    p.set_defaults(func=cmd_eval_vq)

    p = eval_sub.add_parser("ar", help="how well the decoder follows its prompt (quick proxy)",
                            description="Position sensitivity, teacher-forced: on NUM_SCENES fresh single-object "
                                        "scenes, the log-likelihood gap (nats) between the true caption and the "
                                        "same caption with another position, and how often the true position is "
                                        "the most likely of the 9 (chance 1/9). Then the judge's pass rate per "
                                        "category on PROMPTS_PER_CATEGORY generated prompts of each category "
                                        "(0 skips it), with the sampling flags given. Prints JSON.")
    add_sampling_arguments(p)
    p.add_argument("--num-scenes", type=int_at_least(1), default=200, help="position scenes (default: 200)")
    p.add_argument("--word-scenes", type=int_at_least(0), default=0,
                   help="also the word sensitivity on this many 'the word W' scenes, for training and held-out "
                        "words: W against 8 other words of its length (default: 0, not measured)")
    p.add_argument("--colour-scenes", type=int_at_least(0), default=0,
                   help="also the colour-binding sensitivity on this many two-object scenes ('a red circle and a "
                        "blue square'): the caption against the same caption with the colours swapped between the "
                        "shapes (chance 1/2; default: 0, not measured)")
    p.add_argument("--prompts-per-category", type=int_at_least(0), default=10,
                   help="judged prompts per category (default: 10, i.e. 80 prompts)")
    p.add_argument("--seed", type=int, default=0, help="scene, prompt and sampling seed (default: 0)")
    p.add_argument("--out", type=output_file(".json"), help="also write the JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval_ar)

    p = eval_sub.add_parser("loss", help="held-out loss of a decoder on any data, bits per image code",
                            description="Teacher-forced loss of the pipeline's decoder on NUM images of a data "
                                        "source (for data the judge cannot score): bits per image code under each "
                                        "image's caption (with a 95% interval over images) and under the null "
                                        "caption, and their difference in bits per image. Prints JSON.")
    add_checkpoint_argument(p)
    p.add_argument("--data", required=True, help="held-out data: any source the trainers read")
    p.add_argument("--num", type=int_at_least(1), default=500, help="images (default: 500)")
    p.add_argument("--out", type=output_file(".json"), help="also write the JSON here")
    p.set_defaults(func=cmd_eval_loss)

    p = eval_sub.add_parser("digits", help="an outside classifier reads digits the decoder drew",
                            description="For a pipeline trained on 't2i data digits' data: generate "
                                        "NUM_PER_DIGIT images for each caption 'a handwritten digit zero' ... "
                                        "'nine' and classify them with scikit-learn's SVC fitted on the train "
                                        "split's labels (a judge this project did not write). Prints its accuracy "
                                        "on the real held-out scans, on the generated images per digit and "
                                        "overall, and chance (0.1), as JSON; writes a grid with the judge's "
                                        "reading under each image.")
    add_sampling_arguments(p)
    p.add_argument("--num-per-digit", type=int_at_least(1), default=20, help="images per digit (default: 20)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--out", type=output_file(".json"), help="also write the JSON here")
    p.add_argument("--grid", type=output_file(".png"),
                   help=_grid_help("images with the judge's reading", "digits_eval.png"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval_digits)

    p = eval_sub.add_parser("refiner", help="PSNR and sharpness of refined VQ reconstructions, per setting",
                            description="Render NUM fresh scenes, encode and decode them with the VQ tokenizer, "
                                        "then refine the decodings with every --steps x --strengths setting. "
                                        "Reports, per setting, PSNR to the clean render, gradient energy "
                                        "(sharpness; the clean renders' figure is given for reference) and "
                                        "seconds per image, next to the unrefined decodings. Writes a clean | VQ "
                                        "| refined PNG grid for the setting with the best PSNR.")
    add_checkpoint_argument(p)
    p.add_argument("--vq", type=existing_dir, help="VQ model folder (default: CHECKPOINT/vq)")
    p.add_argument("--refiner", type=existing_dir, help="refiner model folder (default: CHECKPOINT/refiner)")
    p.add_argument("--num", type=int_at_least(1), default=200, help="scenes (default: 200)")
    p.add_argument("--steps", type=number_list(int, 1, None), default=[1, 2, 4, 8],
                   help="comma-separated refine step counts (default: 1,2,4,8)")
    p.add_argument("--strengths", type=number_list(float, 0, 1), default=[0.3, 0.6, 1.0],
                   help="comma-separated refine strengths in [0, 1], at most the refiner's max_strength "
                        "(default: 0.3,0.6,1.0)")
    p.add_argument("--seed", type=int, default=0, help="scene and noise seed (default: 0)")
    p.add_argument("--out", type=output_file(".json"), help="also write the JSON here")
    p.add_argument("--grid", type=output_file(".png"), help=_grid_help("clean | VQ | refined grid", "refiner_eval.png"))
    p.set_defaults(func=cmd_eval_refiner)


def cmd_eval_vq(args) -> None:
    from tools.vq_eval import evaluate_vq
    from tools.world import max_word_len_for
    from vq.model import VQModel

    device, dtype = device_and_dtype(args)
    model = VQModel.from_pretrained(args.checkpoint, device=device, dtype=dtype)
    if args.size is not None and args.size != model.config.image_size:
        raise UsageError(f"--size: the tokenizer in {str(args.checkpoint)!r} takes {model.config.image_size} px "
                         f"images, got {args.size}")
    if args.data is not None:
        from tools.sources import read_images
        from tools.vq_eval import evaluate_vq_on_images

        images, _, _ = read_images(args.data, model.config.image_size, args.num)
        report, grid = evaluate_vq_on_images(model, images)
        report["data"] = args.data
        _write_evaluation(report, grid, args, "vq_reconstructions.png", "comparison_grid")
        return
    report, grid = evaluate_vq(model, args.num, seed=args.seed, workers=args.workers,
                               max_word_len=max_word_len_for(model.config.image_size))
    _write_evaluation(report, grid, args, "vq_reconstructions.png", "comparison_grid")


def cmd_eval_ar(args) -> None:
    from tools.ar_eval import evaluate_ar

    pipe = load_pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    report = evaluate_ar(pipe, args.num_scenes, args.prompts_per_category, seed=args.seed,
                         word_scenes=args.word_scenes, colour_scenes=args.colour_scenes,
                         progress=not args.quiet, **sampling_kwargs(args, pipe))
    if args.out:
        from vq.pretrained import write_text

        write_text(args.out, json.dumps(report, indent=2))
    print_json(report)


def cmd_eval_loss(args) -> None:
    from tools.ar_eval import heldout_loss
    from tools.sources import read_images

    pipe = load_pipeline(args)
    images, captions, _ = read_images(args.data, pipe.vq.config.image_size, args.num)
    try:
        report = {"data": args.data, **heldout_loss(pipe, images, captions)}
    except ValueError as e:  # a caption the checkpoint's tokenizer cannot take
        raise UsageError(f"--data: {e}") from None
    if args.out:
        from vq.pretrained import write_text

        write_text(args.out, json.dumps(report, indent=2))
    print_json(report)


def cmd_eval_digits(args) -> None:
    from tools.digits import evaluate_digits

    pipe = load_pipeline(args)
    pipe.set_progress_bar_config(disable=True)
    report, grid = evaluate_digits(pipe, args.num_per_digit, seed=args.seed, progress=not args.quiet,
                                   **sampling_kwargs(args, pipe))
    _write_evaluation(report, grid, args, "digits_eval.png", "grid")


def cmd_eval_refiner(args) -> None:
    from ar_model.pipeline_utils import load_component
    from hybrid.refiner import Refiner
    from tools.refiner_eval import evaluate_refiner
    from vq.model import VQModel

    device, dtype = device_and_dtype(args)
    vq = VQModel.from_pretrained(args.vq) if args.vq else load_component(args.checkpoint, "vq", VQModel)
    refiner = (Refiner.from_pretrained(args.refiner) if args.refiner
               else load_component(args.checkpoint, "refiner", Refiner))
    vq, refiner = vq.to(device=device, dtype=dtype), refiner.to(device=device, dtype=dtype)
    if refiner.config.image_size != vq.config.image_size:
        raise UsageError(f"--refiner works on {refiner.config.image_size} px images but the tokenizer on "
                         f"{vq.config.image_size} px")
    if max(args.strengths) > refiner.config.max_strength:
        raise UsageError(f"--strengths: this refiner was trained on noise up to strength "
                         f"{refiner.config.max_strength}, got {max(args.strengths)}")
    settings = [(steps, strength) for steps in args.steps for strength in args.strengths]
    report, grid = evaluate_refiner(vq.eval(), refiner.eval(), args.num, settings, seed=args.seed)
    _write_evaluation(report, grid, args, "refiner_eval.png", "grid")


def _grid_help(what: str, fallback: str) -> str:
    return f"{what} (default: beside --out, OUT_grid.png; without --out, ./{fallback})"


def _write_evaluation(report: dict, grid, args, fallback: str, grid_key: str) -> None:
    """Save the grid PNG and (with --out) the JSON report, atomically; print the report. The grid goes to --grid,
    else beside --out (a default into the working directory was committed by mistake twice), else ./fallback."""
    from vq.pretrained import atomic_path, write_text

    grid_path = args.grid or (args.out.with_name(args.out.stem + "_grid.png") if args.out else Path(fallback))
    with atomic_path(grid_path) as tmp:
        grid.save(tmp, format="PNG")
    report[grid_key] = str(grid_path)
    if args.out:
        write_text(args.out, json.dumps(report, indent=2))
    print_json(report)
