"""``t2i compare``: every mode on the same prompts and seeds; the work is in ``tools/compare.py``."""

from __future__ import annotations

import json
from pathlib import Path

from tools.cli.args import (
    UsageError, add_checkpoint_argument, device_and_dtype, existing_file, float_in, int_at_least, read_free_prompts,
    read_prompts,
)


def register(sub) -> None:
    p = sub.add_parser("compare", help="every mode on the same prompts and seeds, judged and timed",
                       description="Run each mode on the same prompts and seeds; write OUT/report.json (per mode "
                                   "and category: pass rate with 95% CI and n, text accuracy, CER; latency at "
                                   "batch 1, images/s at batch 8, FLOPs per image, training budget) and "
                                   "OUT/grid.png (a row per prompt, a column per mode), and print a table.")
    p.add_argument("--prompts", type=existing_file, required=True, help="text file, one prompt per line")
    p.add_argument("--free-form", action="store_true",
                   help="take prompts outside the scene world's caption grammar too: they are generated, timed and "
                        "shown in the grid, and only the prompts that parse are judged (default: every prompt "
                        "must parse, so a typo is an error rather than an unjudged prompt)")
    p.add_argument("--modes", default="ar-default,ar-greedy,ar-sample,ar-beam,hybrid,diffusion",
                   help="comma-separated, from ar-default (the checkpoint's own sampling defaults), ar-greedy, "
                        "ar-sample, ar-beam, hybrid, diffusion (default: all)")
    p.add_argument("--seeds", type=int_at_least(1), default=1, help="images per prompt and mode (default: 1)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    add_checkpoint_argument(p)
    p.add_argument("--beam-width", type=int_at_least(1), default=4, help="for ar-beam (default: 4)")
    p.add_argument("--top-k", type=int_at_least(1), default=20, help="for ar-sample (default: 20)")
    p.add_argument("--temperature", type=float_in("temperature", 0, None, open_low=True), default=0.7,
                   help="for ar-sample (default: 0.7, the best sampling temperature measured, docs/recipe.md 17)")
    p.add_argument("--refine-steps", type=int_at_least(0), default=2, help="for hybrid (default: 2)")
    p.add_argument("--refine-strength", type=float_in("refine-strength", 0, 1), default=None,
                   help="for hybrid (default: 1.0 for a residual refiner, 0.3 for an image one)")
    p.add_argument("--steps", type=int_at_least(1), default=20, help="for diffusion (default: 20)")
    p.add_argument("--speed-rounds", type=int_at_least(1), default=3, help="timed rounds per mode (default: 3)")
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> None:
    from tools.compare import MODES, compare, table
    from vq.pretrained import atomic_path, write_text

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise UsageError(f"--modes: {unknown or args.modes!r} not understood; choose from {list(MODES)}, "
                         "comma-separated")
    prompts = read_free_prompts(args.prompts) if args.free_form else \
        read_prompts(args.prompts, hint=" (give --free-form to generate and time prompts the judge cannot score)")
    device, dtype = device_and_dtype(args)

    def save(report: dict) -> None:  # after each mode, marked "complete": false until the end
        args.out.mkdir(parents=True, exist_ok=True)
        write_text(args.out / "report.json", json.dumps(report, indent=2))

    report, grid = compare(args.checkpoint, prompts, modes, args.seeds, speed_rounds=args.speed_rounds,
                           on_progress=save, beam_width=args.beam_width, top_k=args.top_k, temperature=args.temperature,
                           refine_steps=args.refine_steps, refine_strength=args.refine_strength,
                           diffusion_steps=args.steps, device=device, torch_dtype=dtype)
    save(report)
    with atomic_path(args.out / "grid.png") as tmp:
        grid.save(tmp, format="PNG")
    print(table(report))
    print(f"report: {args.out / 'report.json'}  grid: {args.out / 'grid.png'}")
