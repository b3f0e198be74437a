"""``t2i generate``: images from one prompt or a prompt file, with the AR, hybrid or diffusion-only pipeline."""

from __future__ import annotations

import warnings
from pathlib import Path

from tools.cli.args import (
    IMAGE_FORMATS, UsageError, add_sampling_arguments, existing_file, float_in, int_at_least, load_pipeline,
    output_file, print_json, sampling_kwargs, save_image, seeded_generators,
)


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate images from a prompt",
                       description="Generate images with a trained pipeline (default: the shipped tiny "
                                   "checkpoint). One PROMPT -> --out FILE (several images -> one grid) and/or "
                                   "--out-dir DIR (one file per image); or --prompts FILE -> one file per image "
                                   "in --out-dir, ready for 't2i score'. Files in --out-dir are named "
                                   "PROMPT_IMAGE_seedSEED (prompt and image index, zero-padded, and the image's "
                                   "seed); image i of a run uses seed --seed + i.")
    p.add_argument("prompt", nargs="?", help="e.g. 'a red circle to the left of a blue square'")
    p.add_argument("--out", type=output_file(*IMAGE_FORMATS),
                   help="image file to write, .png, .jpg or .webp (its folder must exist)")
    p.add_argument("--prompts", type=existing_file, help="text file, one prompt per line (instead of PROMPT)")
    p.add_argument("--out-dir", type=Path, help="folder for one file per image (created if missing)")
    p.add_argument("--format", choices=("png", "jpg", "webp"), default="png",
                   help="file type in --out-dir (default: png; 't2i score' reads all three)")
    p.add_argument("--num-images", type=int_at_least(1), default=1, help="images per prompt (default: 1)")
    p.add_argument("--mode", choices=("ar", "hybrid", "diffusion"), default="ar",
                   help="ar: the autoregressive model; hybrid: AR, then the diffusion refiner; diffusion: the "
                        "diffusion-only baseline, guidance 1.5 unless --guidance-scale (default: ar)")
    p.add_argument("--refine-steps", type=int_at_least(0), default=2,
                   help="with --mode hybrid: refiner steps; 0 returns the AR image (default: 2)")
    p.add_argument("--refine-strength", type=float_in("refine-strength", 0, 1), default=None,
                   help="with --mode hybrid: noise level the refiner starts from, in [0, 1] (default: 1.0 for a "
                        "residual refiner, as shipped; 0.3 for an image one)")
    p.add_argument("--steps", type=int_at_least(1), default=20,
                   help="with --mode diffusion: DPM-Solver++ steps (default: 20)")
    add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the first image (default: 0)")
    p.add_argument("--batch-size", type=int_at_least(1), default=16, help="with --prompts: prompts per batch")
    p.add_argument("--strict", action="store_true",
                   help="a prompt the checkpoint does not know (a word its training captions never had, or, for a "
                        "scene-world checkpoint, a prompt the grammar of 't2i prompts --grammar' does not parse) "
                        "is an error instead of a warning")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)


def _mode_pipeline(args):
    """The pipeline of --mode and the keyword arguments of its call."""
    if args.mode == "ar":
        pipe = load_pipeline(args)
        return pipe, sampling_kwargs(args, pipe)
    if args.mode == "hybrid":
        from hybrid.pipeline import HybridPipeline

        pipe = load_pipeline(args, HybridPipeline)
        return pipe, {**sampling_kwargs(args, pipe.ar), "refine_steps": args.refine_steps,
                      "refine_strength": args.refine_strength}
    from hybrid.pipeline import DiffusionBaselinePipeline

    if args.sampler is not None or args.guidance_schedule != "constant" or args.guidance_interval is not None:
        raise UsageError("--mode diffusion samples with DPM-Solver++ (--steps, --guidance-scale, "
                         "--negative-prompt); --sampler, --guidance-schedule and --guidance-interval are for "
                         "--mode ar and hybrid")
    pipe = load_pipeline(args, DiffusionBaselinePipeline)
    scale = args.guidance_scale if args.guidance_scale is not None else pipe.default_guidance_scale
    return pipe, {"guidance_scale": scale, "num_inference_steps": args.steps, "negative_prompt": args.negative_prompt}


def image_name(prompt_index: int, image_index: int, seed: int, suffix: str) -> str:
    """Sorted by name, the files of a run are in prompt order, then image order (what 't2i score' expects)."""
    return f"{prompt_index:05d}_{image_index:02d}_seed{seed}.{suffix}"


def cmd_generate(args) -> None:
    from ar_model.prompt_world import UnknownPromptWarning
    from tools.grid import image_grid

    if (args.prompt is None) == (args.prompts is None):
        raise UsageError("give either PROMPT or --prompts FILE (not both)")
    if args.prompt is not None and args.out is None and args.out_dir is None:
        raise UsageError("--out FILE.png (one image or a grid) or --out-dir DIR (a file per image) is required "
                         "with a PROMPT")
    if args.prompts is not None and args.out_dir is None:
        raise UsageError("--out-dir DIR is required with --prompts")
    if args.prompts is not None and args.out is not None:
        raise UsageError("--out is for one PROMPT; with --prompts, images go to --out-dir")
    if args.out_dir is not None and args.out_dir.exists() and not args.out_dir.is_dir():
        raise UsageError(f"--out-dir: {str(args.out_dir)!r} exists and is not a folder")
    pipe, kwargs = _mode_pipeline(args)
    # Each batch shows its own per-step bar (left behind only for a single prompt).
    pipe.set_progress_bar_config(disable=args.quiet, leave=args.prompt is not None)
    prompts = [args.prompt] if args.prompt is not None else _read_prompt_file(args, pipe)
    by_grammar = checked_by_grammar(pipe)
    if by_grammar:
        check_known(prompts, args.strict, "PROMPT" if args.prompt is not None else "--prompts")
    seeds = [[args.seed + p * args.num_images + i for i in range(args.num_images)] for p in range(len(prompts))]
    if args.out_dir is not None:
        args.out_dir.mkdir(parents=True, exist_ok=True)
    files, grid_images = [], []
    from tqdm.auto import tqdm

    batches = range(0, len(prompts), args.batch_size)
    for start in tqdm(batches, desc="prompts", disable=args.quiet or len(batches) == 1):
        batch = prompts[start:start + args.batch_size]
        gens = [g for p in range(start, start + len(batch)) for g in seeded_generators(seeds[p][0], args.num_images)]
        with warnings.catch_warnings():
            if by_grammar:  # check_known has said what there is to say
                warnings.simplefilter("ignore", UnknownPromptWarning)
            out = pipe(batch, num_images_per_prompt=args.num_images, generator=gens, strict=args.strict, **kwargs)
        for k, image in enumerate(out.images):
            p, i = start + k // args.num_images, k % args.num_images
            if args.out_dir is not None:
                path = args.out_dir / image_name(p, i, seeds[p][i], args.format)
                save_image(image, path)
                files.append(str(path))
            grid_images.append(image)
    report = {"prompt": args.prompt} if args.prompt is not None else {"num_prompts": len(prompts)}
    if args.out is not None:
        save_image(grid_images[0] if len(grid_images) == 1 else image_grid(grid_images), args.out)
        report["image"] = str(args.out)
    if args.out_dir is not None:
        report.update({"images": str(args.out_dir), "files": files if args.prompt is not None else len(files)})
    report.update({"num_images": len(grid_images), "seeds": seeds[0] if args.prompt is not None else
                   [seeds[0][0], seeds[-1][-1]], **kwargs})
    print_json(report)


def _read_prompt_file(args, pipe) -> list[str]:
    prompts = [line.strip() for line in args.prompts.read_text().splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts: file {str(args.prompts)!r} holds no prompts")
    tokenizer = pipe.caption_tokenizer
    for number, prompt in enumerate(prompts, 1):  # every prompt checked before the first image is made
        try:
            tokenizer.encode(prompt)
        except ValueError as e:
            raise UsageError(f"--prompts: prompt {number} of {str(args.prompts)!r}: {e}") from None
    return prompts


def checked_by_grammar(pipe) -> bool:
    from tools.train.captions import SCENE_GRAMMAR

    return pipe.prompt_world is not None and pipe.prompt_world.grammar == SCENE_GRAMMAR


def check_known(prompts: list[str], strict: bool, where: str) -> None:
    """For a checkpoint trained on the scene world: each prompt parsed with its grammar, as 't2i render' does, a
    warning per prompt that does not parse (--strict: an error, before any image is made). Other checkpoints
    check words only, in the pipeline."""
    from ar_model.prompt_world import UnknownPromptWarning
    from tools.world import CaptionError, parse_caption

    for number, prompt in enumerate(prompts, 1):
        try:
            parse_caption(prompt)
        except CaptionError as e:
            which = "" if len(prompts) == 1 else f" {number}"
            message = f"{where}{which}: this checkpoint was trained on scene-world captions only: {e}"
            if strict:
                raise UsageError(f"{message} (--strict)") from None
            warnings.warn(f"{message}; the image will likely not follow it (--strict makes this an error)",
                          UnknownPromptWarning, stacklevel=2)
