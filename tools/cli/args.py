"""What several ``t2i`` commands share: the parser class and its one-line errors, argument types that check
their value while parsing, JSON printing, the prompt-file and preset-file checks, and the sampling flags with
the pipeline they are given to.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

# ar_model.sampling.SAMPLERS, written out so that --help does not import torch (a test keeps the two equal).
SAMPLERS = ("greedy", "sample", "beam", "beam_sample")
GUIDANCE_SCHEDULES = ("constant", "linear", "linear_decay")
# The checkpoint that ships in the repository (next to the packages, so it is found from a source checkout).
DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parents[2] / "checkpoints" / "tiny")


class UsageError(ValueError):
    """A bad argument found after parsing (a missing folder, an unreadable prompt file)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# --- argument types ------------------------------------------------------------------------------------------

def int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


def output_file(*suffixes: str):
    """A file to write, named with one of ``suffixes`` (e.g. ".png"), in a folder that exists."""
    allowed = " or ".join(suffixes)

    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() not in suffixes:
            raise argparse.ArgumentTypeError(f"expected a file name ending in {allowed}, got {text!r}")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} of {text!r} does not exist")
        return path

    parse.__name__ = f"{allowed} file"
    return parse


# The image files the CLI writes, by suffix (Pillow's format names).
IMAGE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def save_image(image, path: Path) -> None:
    """Write ``image`` atomically in the format its suffix names (JPEG and WebP at quality 95)."""
    from vq.pretrained import atomic_path

    kind = IMAGE_FORMATS[path.suffix.lower()]
    with atomic_path(path) as tmp:
        image.save(tmp, format=kind, **({} if kind == "PNG" else {"quality": 95}))


def float_in(name: str, low: float | None, high: float | None, open_low: bool = False):
    allowed = (f"in ({low}, {high}]" if open_low else f"in [{low}, {high}]") if high is not None else f">= {low}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {allowed}, got {text!r}") from None
        too_low = low is not None and (value <= low if open_low else value < low)
        if value != value or too_low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected a number {allowed}, got {text!r}")
        return value

    parse.__name__ = f"number {allowed}"
    return parse


def number_list(kind, low: float, high: float | None):
    """Comma-separated numbers (int or float) each in [low, high]."""
    def parse(text: str) -> list:
        try:
            values = [kind(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
        if not values or any(v < low or (high is not None and v > high) for v in values):
            allowed = f"in [{low}, {high}]" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s {allowed}, got {text!r}")
        return values

    parse.__name__ = f"list of {kind.__name__}s"
    return parse


def existing_dir(text: str) -> Path:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"folder {text!r} does not exist")
    return Path(text)


def existing_checkpoint(text: str) -> Path:
    """A checkpoint folder; a Hub-style name ("org/model") is told that nothing is downloaded."""
    from vq.pretrained import CheckpointError, existing_folder

    try:
        return existing_folder(text)
    except CheckpointError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def existing_file(text: str) -> Path:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"file {text!r} does not exist")
    return Path(text)


# --- checks after parsing ------------------------------------------------------------------------------------

def print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


def read_prompts(path: Path, hint: str = "") -> list[str]:
    """The prompts of a file, one a line, each parsed by the caption grammar before any work starts (``hint``:
    what to add to the error of one that does not parse)."""
    from tools.world import CaptionError, parse_caption

    prompts = read_free_prompts(path)
    for number, prompt in enumerate(prompts, 1):
        try:
            parse_caption(prompt)
        except CaptionError as e:
            raise UsageError(f"--prompts: prompt {number} of {str(path)!r}: {e}{hint}") from None
    return prompts


def read_free_prompts(path: Path) -> list[str]:
    """The prompts of a file, one a line, whatever they say."""
    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts: file {str(path)!r} holds no prompts")
    return prompts


def check_preset_file(name: str) -> None:
    if name.endswith(".json") and not Path(name).is_file():
        raise UsageError(f"--preset: file {name!r} does not exist")


# --- the pipeline and its sampling flags ---------------------------------------------------------------------

DTYPES = ("float32", "bfloat16", "float16")


def add_checkpoint_argument(p: argparse.ArgumentParser, device: bool = True) -> None:
    """--checkpoint, and (``device``) the --device and --dtype every command that runs a model takes."""
    p.add_argument("--checkpoint", type=existing_checkpoint, default=DEFAULT_CHECKPOINT,
                   help=f"pipeline folder (default: the shipped {DEFAULT_CHECKPOINT})")
    if device:
        add_device_arguments(p)


def add_device_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu",
                   help="torch device to run on, e.g. cpu, cuda, cuda:1, mps (default: cpu)")
    p.add_argument("--dtype", choices=DTYPES, default="float32",
                   help="weights and activations of the models; 16-bit types are faster on a GPU and change "
                        "images slightly (default: float32)")


def device_and_dtype(args) -> tuple:
    """--device (checked against the installed torch) and --dtype as a torch.dtype."""
    import torch

    from vq.pretrained import check_device

    try:
        check_device(args.device)
    except ValueError as e:
        raise UsageError(f"--device: {e}") from None
    return args.device, getattr(torch, args.dtype)


def add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    add_checkpoint_argument(p)
    p.add_argument("--sampler", choices=SAMPLERS,
                   help="greedy: most likely token each step; sample: draw from the distribution; beam: keep the "
                        "--beam-width best sequences by guided log-probability; beam_sample: beam search whose "
                        "extensions are drawn from the filtered distribution, as transformers' do_sample with "
                        "num_beams (default: the checkpoint's, its best measured setting, recorded in pipeline.json)")
    p.add_argument("--beam-width", type=int_at_least(1),
                   help="with --sampler beam or beam_sample: beams kept (default: the checkpoint's)")
    p.add_argument("--temperature", type=float_in("temperature", 0, None),
                   help="with --sampler sample: softmax temperature, >= 0 (default: the checkpoint's)")
    p.add_argument("--top-k", type=int_at_least(0),
                   help="with --sampler sample: keep the k most likely tokens; 0 keeps all (default: the "
                        "checkpoint's)")
    p.add_argument("--top-p", type=float_in("top-p", 0, 1, open_low=True),
                   help="with --sampler sample: keep the smallest set of tokens holding this probability, in (0, 1]; "
                        "1 keeps all (default: the checkpoint's)")
    p.add_argument("--guidance-scale", "--cfg-scale", type=float_in("guidance-scale", 1, None), default=None,
                   help="classifier-free guidance scale, >= 1; 1 turns it off (default: the checkpoint's)")
    p.add_argument("--guidance-schedule", "--cfg-schedule", choices=GUIDANCE_SCHEDULES, default="constant",
                   help="constant scale; linear: a ramp from 1 at the first image token up to the scale at the "
                        "last; linear_decay: from the scale at the first down to 1 at the last (default: constant)")
    p.add_argument("--guidance-interval", "--cfg-interval", type=int_at_least(0),
                   help="guide only the first N image tokens, then drop the unconditional half (default: all)")
    p.add_argument("--negative-prompt", help="guide away from this prompt instead of the null caption")


def sampling_kwargs(args, pipe) -> dict:
    """The sampling flags as pipeline arguments; a flag not given is None, which the pipeline resolves to the
    checkpoint's default (pipe.generation_defaults)."""
    return dict(sampler=args.sampler, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                guidance_scale=args.guidance_scale, guidance_schedule=args.guidance_schedule,
                guidance_interval=args.guidance_interval,
                beam_width=args.beam_width, negative_prompt=args.negative_prompt)


def load_pipeline(args, cls=None):
    """The pipeline of --checkpoint (``cls``: TextToImage unless given) on --device in --dtype."""
    if cls is None:
        from ar_model.pipeline import TextToImage as cls
    device, dtype = device_and_dtype(args)
    return cls.from_pretrained(args.checkpoint, torch_dtype=dtype, device=device)


def seeded_generators(seed: int, count: int):
    import torch

    # Image i of a run takes seed + i, so any one image can be made again on its own.
    return [torch.Generator().manual_seed(seed + i) for i in range(count)]
