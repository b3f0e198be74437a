"""``t2i generate``: images from one prompt or a prompt file, with the AR, hybrid or diffusion-only pipeline."""

from __future__ import annotations

from pathlib import Path

from tools.cli.args import (
    UsageError, add_sampling_arguments, existing_file, float_in, int_at_least, load_pipeline, output_file, print_json,
    sampling_kwargs, seeded_generators,
)


def register(sub) -> None:
    p = sub.add_parser("generate", help="generate images from a prompt",
                       description="Generate images with a trained pipeline (default: the shipped tiny "
                                   "checkpoint). One PROMPT -> --out FILE.png (several images -> one grid); or "
                                   "--prompts FILE -> one PNG per image in --out-dir, named PROMPT_IMAGE.png, "
                                   "ready for 't2i score'. Image i of a run uses seed --seed + i.")
    p.add_argument("prompt", nargs="?", help="e.g. 'a red circle to the left of a blue square'")
    p.add_argument("--out", type=output_file(".png"), help="PNG to write (its folder must exist)")
    p.add_argument("--prompts", type=existing_file, help="text file, one prompt per line (instead of PROMPT)")
    p.add_argument("--out-dir", type=Path, help="with --prompts: folder for the PNGs (created if missing)")
    p.add_argument("--num-images", type=int_at_least(1), default=1, help="images per prompt (default: 1)")
    p.add_argument("--mode", choices=("ar", "hybrid", "diffusion"), default="ar",
                   help="ar: the autoregressive model; hybrid: AR, then the diffusion refiner; diffusion: the "
                        "diffusion-only baseline, guidance 1.5 unless --cfg-scale (default: ar)")
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
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)


def _mode_pipeline(args):
    """The pipeline of --mode and the keyword arguments of its call."""
    if args.mode == "ar":
        pipe = load_pipeline(args.checkpoint)
        return pipe, sampling_kwargs(args, pipe)
    if args.mode == "hybrid":
        from hybrid.pipeline import HybridPipeline

        pipe = HybridPipeline.from_pretrained(args.checkpoint)
        return pipe, {**sampling_kwargs(args, pipe.ar), "refine_steps": args.refine_steps,
                      "refine_strength": args.refine_strength}
    from hybrid.pipeline import DiffusionBaselinePipeline

    if args.sampler is not None or args.cfg_schedule != "constant" or args.cfg_interval is not None \
            or args.negative_prompt is not None:
        raise UsageError("--mode diffusion samples with DPM-Solver++ (--steps, --cfg-scale); --sampler, "
                         "--cfg-schedule, --cfg-interval and --negative-prompt are for --mode ar and hybrid")
    pipe = DiffusionBaselinePipeline.from_pretrained(args.checkpoint)
    return pipe, {"cfg_scale": args.cfg_scale if args.cfg_scale is not None else pipe.default_cfg_scale,
                  "num_inference_steps": args.steps}


def cmd_generate(args) -> None:
    from tools.grid import image_grid
    from vq.pretrained import atomic_path

    if (args.prompt is None) == (args.prompts is None):
        raise UsageError("give either PROMPT or --prompts FILE (not both)")
    if args.prompt is not None and args.out is None:
        raise UsageError("--out FILE.png is required with a PROMPT")
    if args.prompts is not None and args.out_dir is None:
        raise UsageError("--out-dir DIR is required with --prompts")
    pipe, kwargs = _mode_pipeline(args)
    pipe.set_progress_bar_config(disable=args.quiet)
    if args.prompt is not None:
        out = pipe(args.prompt, num_images=args.num_images,
                   generator=seeded_generators(args.seed, args.num_images), **kwargs)
        image = out.images[0] if len(out.images) == 1 else image_grid(out.images)
        with atomic_path(args.out) as tmp:
            image.save(tmp, format="PNG")
        print_json({"image": str(args.out), "prompt": args.prompt, "num_images": len(out.images),
                    "seeds": [args.seed + i for i in range(args.num_images)], **kwargs})
        return
    prompts = [line.strip() for line in args.prompts.read_text().splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts: file {str(args.prompts)!r} holds no prompts")
    for number, prompt in enumerate(prompts, 1):  # every prompt checked before the first image is made
        try:
            (pipe.ar if args.mode == "hybrid" else pipe).caption_tokenizer.encode(prompt)
        except ValueError as e:
            raise UsageError(f"--prompts: prompt {number} of {str(args.prompts)!r}: {e}") from None
    args.out_dir.mkdir(parents=True, exist_ok=True)
    from tqdm.auto import tqdm

    pipe.set_progress_bar_config(disable=True)
    files = []
    for start in tqdm(range(0, len(prompts), args.batch_size), desc="prompts", disable=args.quiet):
        batch = prompts[start:start + args.batch_size]
        gens = [g for i in range(len(batch))
                for g in seeded_generators(args.seed + (start + i) * args.num_images, args.num_images)]
        out = pipe(batch, num_images=args.num_images, generator=gens, **kwargs)
        for k, image in enumerate(out.images):
            path = args.out_dir / f"{start + k // args.num_images:05d}_{k % args.num_images}.png"
            with atomic_path(path) as tmp:
                image.save(tmp, format="PNG")
            files.append(path)
    print_json({"images": str(args.out_dir), "num_prompts": len(prompts), "num_images": len(files), **kwargs})
