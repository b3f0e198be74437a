"""``t2i bench data|decode|train``: benchmarks that print JSON; the timing is done in ``tools/bench*.py``."""

from __future__ import annotations

from tools.cli.args import (
    Parser, UsageError, add_checkpoint_argument, check_preset_file, int_at_least, load_pipeline, print_json,
)


def register(sub) -> None:
    bench = sub.add_parser("bench", help="benchmarks (print JSON)", description="Benchmarks that print JSON.")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, parser_class=Parser, metavar="WHAT")
    p = bench_sub.add_parser("data", help="scenes per second (sample, render, PNG-encode) by canvas size",
                             description="Time sampling, rendering and PNG-encoding scenes at each size, "
                                         "interleaved in one run so the sizes compare fairly.")
    p.add_argument("--num", type=int_at_least(10), default=500, help="scenes per size (default: 500)")
    p.add_argument("--sizes", type=int_at_least(48), nargs="+", default=[64, 128], help="canvas sides")
    p.set_defaults(func=cmd_bench_data)
    p = bench_sub.add_parser("decode", help="our decode loop vs transformers.generate, ms per token",
                             description="Greedy decoding with our static-cache loop against transformers.generate "
                                         "on the exported weights (identical tokens asserted first): ms per token at "
                                         "batch 1 and 8, CFG on vs off, beam W=4, eager vs torch.compile.")
    add_checkpoint_argument(p)
    p.add_argument("--rounds", type=int_at_least(1), default=3, help="timed rounds per variant (default: 3)")
    # --device and --dtype (add_checkpoint_argument) apply to both loops; in float32 their greedy tokens must be
    # identical, in 16 bits the JSON reports how often they agree.
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--no-transformers", action="store_true", help="skip transformers.generate")
    p.set_defaults(func=cmd_bench_decode)
    p = bench_sub.add_parser("train", help="seconds per training step of each preset, side by side",
                             description="Time forward + backward + AdamW steps of each AR preset (a name in "
                                         "configs/ar or a JSON file) on random sequences of its shape, and of "
                                         "each --diffusion preset on random images and captions, the variants "
                                         "taking turns: seconds per step, images per hour, and the ratio to the "
                                         "first. What equal-compute ablations are sized by, and how the AR and "
                                         "diffusion budgets are compared on one machine.")
    p.add_argument("presets", nargs="*", help="AR presets: names (tiny) or JSON files")
    p.add_argument("--diffusion", action="append", default=[], metavar="PRESET",
                   help="also a diffusion baseline preset (a name in configs/diffusion or a JSON file); repeatable")
    p.add_argument("--text-vocab-size", type=int_at_least(1), default=448,
                   help="the baseline's caption pieces (default: 448, the shipped caption tokenizer's)")
    p.add_argument("--steps", type=int_at_least(1), default=3, help="steps per variant per round (default: 3)")
    p.add_argument("--rounds", type=int_at_least(1), default=2, help="rounds (default: 2)")
    p.add_argument("--dtype", choices=("preset", "both", "float32", "bfloat16"), default="preset",
                   help="autocast of the matrix products: each preset's bf16 setting, both, or one for all "
                        "(default: preset)")
    p.add_argument("--codebook-size", type=int_at_least(2), default=512, help="VQ codes (default: 512)")
    p.add_argument("--grid-size", type=int_at_least(1), default=16, help="tokens per side (default: 16)")
    p.set_defaults(func=cmd_bench_train)


def cmd_bench_data(args) -> None:
    from tools.bench import bench_data

    print_json(bench_data(args.num, args.sizes))


def cmd_bench_decode(args) -> None:
    from tools.bench_decode import bench_decode

    pipe = load_pipeline(args)
    print_json(bench_decode(pipe, rounds=args.rounds, compile_decode=not args.no_compile,
                            hf=not args.no_transformers, dtype=pipe.dtype))


def cmd_bench_train(args) -> None:
    from tools.bench_train import bench_train

    if not args.presets and not args.diffusion:
        raise UsageError("bench train: give at least one AR preset or --diffusion PRESET")
    for name in args.presets + args.diffusion:
        check_preset_file(name)
    bf16 = {"preset": None, "both": [False, True], "float32": [False], "bfloat16": [True]}[args.dtype]
    try:
        report = bench_train(args.presets, steps=args.steps, rounds=args.rounds, codebook_size=args.codebook_size,
                             grid_size=args.grid_size, bf16=bf16, diffusion=args.diffusion,
                             text_vocab_size=args.text_vocab_size)
    except ValueError as e:
        raise UsageError(f"bench train: {e}") from None
    print_json(report)
