"""``t2i render`` and ``t2i prompts``: the scene world itself, no model involved."""

from __future__ import annotations

import random

from tools.cli.args import UsageError, int_at_least, output_file, print_json
from tools.world.config import PRESETS
from tools.world.vocab import CATEGORIES


def register(sub) -> None:
    p = sub.add_parser("render", help="draw the scene a caption describes and judge it",
                       description="Lay out and draw a scene for CAPTION (t2i prompts --grammar), write it as a PNG, "
                                   "and print the judge's verdict on it as JSON.")
    p.add_argument("caption", help="e.g. 'the word CAT in blue at the bottom and a red circle at the top'")
    p.add_argument("--out", required=True, type=output_file(".png"), help="PNG file to write (its folder must exist)")
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="canvas size from a preset (default: tiny, 64 px)")
    p.add_argument("--size", type=int_at_least(48), help="canvas side in pixels; overrides --preset")
    p.add_argument("--seed", type=int, default=0, help="seed for the unstated details (size, jitter, cells)")
    p.set_defaults(func=cmd_render)

    p = sub.add_parser("prompts", help="print evaluation prompts, or the caption grammar",
                       description="Print evaluation prompts, one per line, from seeds apart from training data; or, "
                                   "with --grammar, the caption grammar the world is drawn from and the judge reads "
                                   "(docs/world.md explains it).")
    p.add_argument("--grammar", action="store_true", help="print the caption grammar and stop")
    p.add_argument("--category", choices=CATEGORIES + ("all",),
                   help="a category (docs/world.md), or all (NUM prompts of each, in category order)")
    p.add_argument("--num", type=int_at_least(1), help="prompts (per category with 'all')")
    p.add_argument("--seed", type=int, default=0, help="prompt seed (default: 0)")
    p.add_argument("--words", choices=("train", "heldout"), default="train", help="word list for text prompts")
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="longest word from a preset (default: tiny)")
    p.set_defaults(func=cmd_prompts_or_grammar)


def cmd_prompts_or_grammar(args) -> None:
    if args.grammar:
        from tools.world.config import WorldConfig
        from tools.world.grammar import grammar_text

        print(grammar_text(WorldConfig.from_preset(args.preset).max_word_len))
        return
    if args.category is None or args.num is None:
        raise UsageError("give --category and --num (or --grammar)")
    cmd_prompts(args)


def cmd_render(args) -> None:
    from tools.judge.verdict import score
    from tools.world import layout, parse_caption, render
    from tools.world.config import WorldConfig
    from vq.pretrained import atomic_path

    size = args.size or WorldConfig.from_preset(args.preset).image_size
    scene = layout(parse_caption(args.caption), random.Random(args.seed))
    image = render(scene, size)
    verdict = score(image, args.caption)  # before writing: a missing OCR engine leaves no file behind
    with atomic_path(args.out) as tmp:
        image.save(tmp, format="PNG")
    print_json({"image": str(args.out), "size": size, **verdict.to_dict()})


def cmd_prompts(args) -> None:
    from tools.prompts import make_prompts
    from tools.world.config import WorldConfig

    for prompt in make_prompts(args.category, args.num, args.seed, args.words, WorldConfig.from_preset(args.preset)):
        print(prompt)
