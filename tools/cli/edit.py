"""``t2i edit complete|regenerate``: keep some tokens of an image and generate the others for a prompt."""

from __future__ import annotations

from pathlib import Path

from tools.cli.args import (
    IMAGE_FORMATS, Parser, UsageError, add_sampling_arguments, existing_file, int_at_least, load_pipeline,
    output_file, print_json, sampling_kwargs, save_image, seeded_generators,
)


def register(sub) -> None:
    edit = sub.add_parser("edit", help="edit an image by its tokens",
                          description="Edit an image by its tokens with a trained pipeline: keep some tokens of "
                                      "IMAGE and generate the others for --prompt.")
    edit_sub = edit.add_subparsers(dest="edit_command", required=True, parser_class=Parser, metavar="HOW")
    for name, text in (("complete", "keep the top --keep-rows token rows of IMAGE and generate the rest"),
                       ("regenerate", "regenerate the tokens inside --box and keep every other token")):
        p = edit_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("image", type=existing_file, help="PNG of the pipeline's size (64x64 for tiny)")
        p.add_argument("--prompt", required=True, help="what the edited image should show")
        if name == "complete":
            p.add_argument("--keep-rows", type=int_at_least(0), required=True,
                           help="token rows to keep from the top (0 .. grid size; a tiny token row is 4 px)")
        else:
            p.add_argument("--box", type=int, nargs=4, required=True, metavar=("X0", "Y0", "X1", "Y1"),
                           help="pixels; X1 and Y1 exclusive; every token whose cell overlaps it is regenerated")
        p.add_argument("--out", type=output_file(*IMAGE_FORMATS), required=True,
                       help="image file to write: .png, .jpg or .webp")
        p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        add_sampling_arguments(p)
        p.set_defaults(func=cmd_edit)


def _read_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"IMAGE: cannot read {str(path)!r} as an image ({e})") from None


def cmd_edit(args) -> None:
    pipe = load_pipeline(args)
    pipe.set_progress_bar_config(disable=args.quiet)
    image = _read_image(args.image)
    kwargs = sampling_kwargs(args, pipe)
    generator = seeded_generators(args.seed, 1)
    try:
        if args.edit_command == "complete":
            out = pipe.complete(image, keep_rows=args.keep_rows, prompt=args.prompt, generator=generator, **kwargs)
        else:
            out = pipe.regenerate(image, box=tuple(args.box), prompt=args.prompt, generator=generator, **kwargs)
    except ValueError as e:
        name = {"keep_rows": "--keep-rows", "box": "--box", "image": "IMAGE"}
        message = str(e)
        for key, flag in name.items():
            if message.startswith(key):
                raise UsageError(f"{flag}: {message}") from None
        raise
    save_image(out.images[0], args.out)
    print_json({"image": str(args.out), "edit": args.edit_command, "prompt": args.prompt, "seed": args.seed,
                **{k: v for k, v in kwargs.items() if k != "negative_prompt"}})
