"""The ``t2i`` command: argument parsing only; the work lives in the modules it calls.

Every user error is one line on stderr, ``t2i <command>: error: ...``, naming the argument, what was given and
what is allowed, with exit code 2 and no output file left behind.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

from tools.world.config import PRESETS
from tools.world.vocab import CATEGORIES

# The checkpoint that ships in the repository (next to the packages, so it is found from a source checkout).
DEFAULT_CHECKPOINT = str(Path(__file__).resolve().parent.parent / "checkpoints" / "tiny")


class UsageError(ValueError):
    """A bad argument found after parsing (a missing folder, an unreadable prompt file)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of argparse's usage block
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _int_at_least(low: int):
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


def _output_file(suffix: str):
    def parse(text: str) -> Path:
        path = Path(text)
        if path.suffix.lower() != suffix:
            raise argparse.ArgumentTypeError(f"expected a file name ending in {suffix}, got {text!r}")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"folder {str(path.parent)!r} of {text!r} does not exist")
        return path

    parse.__name__ = f"{suffix} file"
    return parse


def _float_in(name: str, low: float | None, high: float | None, open_low: bool = False):
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


def _number_list(kind, low: float, high: float | None):
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


def _existing_dir(text: str) -> Path:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"folder {text!r} does not exist")
    return Path(text)


def _existing_file(text: str) -> Path:
    if not Path(text).is_file():
        raise argparse.ArgumentTypeError(f"file {text!r} does not exist")
    return Path(text)


def _print_json(obj) -> None:
    print(json.dumps(obj, indent=2))


# --- commands ------------------------------------------------------------------------------------------------

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
    _print_json({"image": str(args.out), "size": size, **verdict.to_dict()})


def cmd_data_make(args) -> None:
    from tools.shards import make_shards
    from tools.world.config import WorldConfig

    args.out.mkdir(parents=True, exist_ok=True)
    manifest = make_shards(args.out, args.num, WorldConfig.from_preset(args.preset), seed=args.seed,
                           split=args.split, shard_size=args.shard_size)
    _print_json({"manifest": str(manifest), **json.loads(manifest.read_text())})


def cmd_prompts(args) -> None:
    from tools.prompts import make_prompts
    from tools.world.config import WorldConfig

    for prompt in make_prompts(args.category, args.num, args.seed, args.words, WorldConfig.from_preset(args.preset)):
        print(prompt)


def _read_prompts(path: Path) -> list[str]:
    from tools.world import CaptionError, parse_caption

    prompts = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not prompts:
        raise UsageError(f"--prompts: file {str(path)!r} holds no prompts")
    for number, prompt in enumerate(prompts, 1):
        try:
            parse_caption(prompt)
        except CaptionError as e:
            raise UsageError(f"--prompts: prompt {number} of {str(path)!r}: {e}") from None
    return prompts


def cmd_score(args) -> None:
    if args.validate:
        from tools.judge.validate import validate

        max_word_len = 4 if args.size < 128 else 6  # as the presets: tiny (64 px) draws words of up to 4 letters
        report = validate(args.num, args.size, max_word_len, seed=args.seed, workers=args.workers)
        _print_json(report)
        if args.out:
            from vq.pretrained import write_text

            write_text(args.out, json.dumps(report, indent=2))
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

    prompts = _read_prompts(args.prompts)
    files = sorted(p for p in args.images.iterdir() if p.suffix.lower() == ".png")
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
    _print_json({k: v for k, v in report.items() if k != "failures"})


def cmd_bench_data(args) -> None:
    from tools.bench import bench_data

    _print_json(bench_data(args.num, args.sizes))


def cmd_train_diffusion(args) -> None:
    """``t2i train refiner`` and ``t2i train diffusion``."""
    from tools.shards import read_split
    from tools.train.config import DiffusionPreset
    from tools.train.diffusion import baseline_conditions, refiner_conditions, train_diffusion

    kind = args.train_command  # "refiner" or "diffusion"
    _check_preset_file(args.preset)
    preset = DiffusionPreset.from_name(kind, args.preset)
    images, captions = read_split(args.data, "train", preset.train.num_train)
    overrides = {}
    if kind == "refiner":
        from vq.model import VQModel

        vq = VQModel.from_pretrained(args.vq)
        if vq.config.image_size != images.shape[-1]:
            raise UsageError(f"--vq: the tokenizer takes {vq.config.image_size} px images but --data holds "
                             f"{images.shape[-1]} px")
        conditions = refiner_conditions(vq, images, args.out)
    else:
        from ar_model.text_tokenizer import CaptionTokenizer

        tokenizer = CaptionTokenizer.from_pretrained(args.tokenizer)
        overrides = {"text_vocab_size": tokenizer.vocab_size}
        length = preset.model.get("max_caption_tokens", 32)
        try:
            conditions = baseline_conditions(tokenizer, captions, length, args.out)
        except ValueError as e:
            raise UsageError(f"--preset: training {e} (max_caption_tokens {length})") from None
    model_dir = train_diffusion(preset, overrides, images, conditions, args.out, max_minutes=args.max_minutes,
                                resume=args.resume)
    _print_json({"model": str(model_dir)})


def cmd_bench_decode(args) -> None:
    import torch

    from ar_model.pipeline import TextToImage
    from tools.bench_decode import bench_decode

    if args.device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device: 'cuda' was asked for but torch sees no GPU; use --device cpu")
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]
    pipe = TextToImage.from_pretrained(args.checkpoint, device=args.device, dtype=dtype)
    _print_json(bench_decode(pipe, rounds=args.rounds, compile_decode=not args.no_compile,
                             hf=not args.no_transformers, dtype=dtype))


def cmd_bench_train(args) -> None:
    from tools.bench_train import bench_train

    for name in args.presets:
        _check_preset_file(name)
    bf16 = {"preset": None, "both": [False, True], "float32": [False], "bfloat16": [True]}[args.dtype]
    try:
        report = bench_train(args.presets, steps=args.steps, rounds=args.rounds, codebook_size=args.codebook_size,
                             grid_size=args.grid_size, bf16=bf16)
    except ValueError as e:
        raise UsageError(f"--presets: {e}") from None
    _print_json(report)


def cmd_train_vq(args) -> None:
    from tools.shards import read_split
    from tools.train.config import VQPreset
    from tools.train.vq import train_vq

    preset = _load_preset(VQPreset, args.preset)
    images, _ = read_split(args.data, "train", preset.train.num_train)
    if images.shape[-1] != preset.model.image_size:
        raise UsageError(f"--data: images are {images.shape[-1]} px but preset {args.preset!r} expects "
                         f"{preset.model.image_size} px (make the data with the same --preset)")
    model_dir = train_vq(preset, images, args.out, max_minutes=args.max_minutes, resume=args.resume)
    _print_json({"model": str(model_dir)})


def cmd_eval_vq(args) -> None:
    from tools.vq_eval import evaluate_vq
    from vq.model import VQModel

    model = VQModel.from_pretrained(args.checkpoint)
    if args.size is not None and args.size != model.config.image_size:
        raise UsageError(f"--size: the tokenizer in {str(args.checkpoint)!r} takes {model.config.image_size} px "
                         f"images, got {args.size}")
    report, grid = evaluate_vq(model, args.num, seed=args.seed, workers=args.workers,
                               max_word_len=4 if model.config.image_size < 128 else 6)
    _write_evaluation(report, grid, args.grid or Path("vq_reconstructions.png"), args.out, "comparison_grid")


def cmd_eval_ar(args) -> None:
    from tools.ar_eval import evaluate_ar

    pipe = _pipeline(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    report = evaluate_ar(pipe, args.num_scenes, args.prompts_per_category, seed=args.seed,
                         progress=not args.quiet, **_sampling_kwargs(args, pipe))
    if args.out:
        from vq.pretrained import write_text

        write_text(args.out, json.dumps(report, indent=2))
    _print_json(report)


def _write_evaluation(report: dict, grid, grid_path: Path, json_path: Path | None, grid_key: str) -> None:
    """Save the grid PNG and (if asked) the JSON report, atomically; print the report."""
    from vq.pretrained import atomic_path, write_text

    with atomic_path(grid_path) as tmp:
        grid.save(tmp, format="PNG")
    report[grid_key] = str(grid_path)
    if json_path:
        write_text(json_path, json.dumps(report, indent=2))
    _print_json(report)


def cmd_eval_refiner(args) -> None:
    from hybrid.pipeline import load_component
    from hybrid.refiner import Refiner
    from tools.refiner_eval import evaluate_refiner
    from vq.model import VQModel

    vq = VQModel.from_pretrained(args.vq) if args.vq else load_component(args.checkpoint, "vq", VQModel)
    refiner = (Refiner.from_pretrained(args.refiner) if args.refiner
               else load_component(args.checkpoint, "refiner", Refiner))
    if refiner.config.image_size != vq.config.image_size:
        raise UsageError(f"--refiner works on {refiner.config.image_size} px images but the tokenizer on "
                         f"{vq.config.image_size} px")
    if max(args.strengths) > refiner.config.max_strength:
        raise UsageError(f"--strengths: this refiner was trained on noise up to strength "
                         f"{refiner.config.max_strength}, got {max(args.strengths)}")
    settings = [(steps, strength) for steps in args.steps for strength in args.strengths]
    report, grid = evaluate_refiner(vq.float().eval(), refiner.float().eval(), args.num, settings, seed=args.seed)
    _write_evaluation(report, grid, args.grid or Path("refiner_eval.png"), args.out, "grid")


def _check_preset_file(name: str) -> None:
    if name.endswith(".json") and not Path(name).is_file():
        raise UsageError(f"--preset: file {name!r} does not exist")


def _load_preset(cls, name: str):
    _check_preset_file(name)
    if name.endswith(".json"):
        return cls.from_json(name)
    return cls.from_name(name)


def cmd_train_ar(args) -> None:
    from tools.shards import read_split
    from tools.train.ar import train_ar
    from tools.train.config import ARPreset

    preset = _load_preset(ARPreset, args.preset)
    for name in ("config.json", "model.safetensors"):
        if not (args.vq / name).is_file():
            raise UsageError(f"--vq: {str(args.vq)!r} has no {name}; give the model folder written by 't2i train vq'")
    images, captions = read_split(args.data, "train", preset.train.num_train)
    pipeline_dir = train_ar(preset, args.vq, images, captions, args.out, max_minutes=args.max_minutes,
                            resume=args.resume)
    _print_json({"pipeline": str(pipeline_dir)})


def _pipeline(checkpoint: Path):
    from ar_model.pipeline import TextToImage

    return TextToImage.from_pretrained(checkpoint)


def _seeded_generators(seed: int, count: int):
    import torch

    # Image i of a run takes seed + i, so any one image can be made again on its own.
    return [torch.Generator().manual_seed(seed + i) for i in range(count)]


def _mode_pipeline(args):
    """The pipeline of --mode and the keyword arguments of its call."""
    if args.mode == "ar":
        pipe = _pipeline(args.checkpoint)
        return pipe, _sampling_kwargs(args, pipe)
    if args.mode == "hybrid":
        from hybrid.pipeline import HybridPipeline

        pipe = HybridPipeline.from_pretrained(args.checkpoint)
        return pipe, {**_sampling_kwargs(args, pipe.ar), "refine_steps": args.refine_steps,
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
                   generator=_seeded_generators(args.seed, args.num_images), **kwargs)
        image = out.images[0] if len(out.images) == 1 else image_grid(out.images)
        with atomic_path(args.out) as tmp:
            image.save(tmp, format="PNG")
        _print_json({"image": str(args.out), "prompt": args.prompt, "num_images": len(out.images),
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
                for g in _seeded_generators(args.seed + (start + i) * args.num_images, args.num_images)]
        out = pipe(batch, num_images=args.num_images, generator=gens, **kwargs)
        for k, image in enumerate(out.images):
            path = args.out_dir / f"{start + k // args.num_images:05d}_{k % args.num_images}.png"
            with atomic_path(path) as tmp:
                image.save(tmp, format="PNG")
            files.append(path)
    _print_json({"images": str(args.out_dir), "num_prompts": len(prompts), "num_images": len(files), **kwargs})


def _read_image(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        return Image.open(path).convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise UsageError(f"IMAGE: cannot read {str(path)!r} as an image ({e})") from None


def cmd_edit(args) -> None:
    from vq.pretrained import atomic_path

    pipe = _pipeline(args.checkpoint)
    pipe.set_progress_bar_config(disable=args.quiet)
    image = _read_image(args.image)
    kwargs = _sampling_kwargs(args, pipe)
    generator = _seeded_generators(args.seed, 1)
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
    with atomic_path(args.out) as tmp:
        out.images[0].save(tmp, format="PNG")
    _print_json({"image": str(args.out), "edit": args.edit_command, "prompt": args.prompt, "seed": args.seed,
                 **{k: v for k, v in kwargs.items() if k != "negative_prompt"}})


def cmd_export(args) -> None:
    from ar_model.export import export_llama

    pipe = _pipeline(args.checkpoint)
    out = export_llama(pipe.decoder, args.out, caption_tokenizer_dir=args.checkpoint / "caption_tokenizer")
    report = {"export": str(out), "format": "transformers LlamaForCausalLM",
              "files": sorted(p.name for p in out.iterdir())}
    if args.verify:
        from ar_model.export import verify_export
        from ar_model.sequence import caption_prefixes
        from tools.bench_decode import PROMPTS

        prompts = caption_prefixes(pipe.decoder.config, [pipe.caption_tokenizer.encode(p) for p in PROMPTS])
        report["verify"] = verify_export(pipe.decoder, out, prompts)
    _print_json(report)


def cmd_compare(args) -> None:
    from tools.compare import MODES, compare, table
    from vq.pretrained import atomic_path, write_text

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise UsageError(f"--modes: {unknown or args.modes!r} not understood; choose from {list(MODES)}, "
                         "comma-separated")
    prompts = _read_prompts(args.prompts)

    def save(report: dict) -> None:  # after each mode, marked "complete": false until the end
        args.out.mkdir(parents=True, exist_ok=True)
        write_text(args.out / "report.json", json.dumps(report, indent=2))

    report, grid = compare(args.checkpoint, prompts, modes, args.seeds, speed_rounds=args.speed_rounds,
                           on_progress=save, beam_width=args.beam_width, top_k=args.top_k,
                           refine_steps=args.refine_steps, refine_strength=args.refine_strength,
                           diffusion_steps=args.steps)
    save(report)
    with atomic_path(args.out / "grid.png") as tmp:
        grid.save(tmp, format="PNG")
    print(table(report))
    print(f"report: {args.out / 'report.json'}  grid: {args.out / 'grid.png'}")


def cmd_release(args) -> None:
    import torch

    from ar_model.pipeline import check_generation_defaults
    from vq.pretrained import write_text

    pipe = _pipeline(args.checkpoint)
    extra = {}  # the diffusion models that join the release, checked before anything is written
    if args.refiner is not None:
        from hybrid.refiner import Refiner

        extra["refiner"] = Refiner.from_pretrained(args.refiner)
    if args.diffusion is not None:
        from hybrid.baseline import DiffusionBaseline

        extra["baseline"] = DiffusionBaseline.from_pretrained(args.diffusion)
    given = {key: getattr(args, f"default_{key}") for key in ("sampler", "temperature", "top_k", "top_p", "cfg_scale")}
    chosen = {k: (None if k == "top_k" and v == 0 else v) for k, v in given.items()
              if v is not None}  # --default-top-k 0: no top-k
    pipe.generation_defaults = check_generation_defaults({**pipe.generation_defaults, **chosen})
    pipe.save_pretrained(args.out, dtype=torch.float16)
    runs = {"ar": args.checkpoint.parent, **{name: Path(getattr(args, "refiner" if name == "refiner" else
                                                                "diffusion")).parent for name in extra}}
    for name, model in extra.items():
        model.save_pretrained(args.out / name, dtype=torch.float16)
    # What each model cost to train, from its run folder, for `t2i compare`; re-releasing a release keeps the
    # record it already has.
    prior_file = args.checkpoint / "training.json"
    prior = json.loads(prior_file.read_text()) if prior_file.is_file() else {}
    training = {}
    for name, run_dir in runs.items():
        record = {}
        for file, key in (("training.json", None), ("preset.json", "train")):
            if (run_dir / file).is_file():
                data = json.loads((run_dir / file).read_text())
                record.update({"preset_train": data[key]} if key else data)
        training[name] = record or prior.get(name)
    write_text(args.out / "training.json", json.dumps(training, indent=2))
    sizes = {str(p.relative_to(args.out)): p.stat().st_size for p in sorted(args.out.rglob("*")) if p.is_file()}
    _print_json({"release": str(args.out), "dtype": "float16", "bytes": sum(sizes.values()), "files": sizes})


# --- parser --------------------------------------------------------------------------------------------------

def _add_run_arguments(p: argparse.ArgumentParser, result: str) -> None:
    """--data, --out, --max-minutes and --resume: what every trainer takes."""
    p.add_argument("--data", type=_existing_dir, required=True, help="folder made by 't2i data make'")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--max-minutes", type=float, help=f"stop (and write the {result}) after this many minutes")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")


def _checkpoint_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=_existing_dir, default=DEFAULT_CHECKPOINT,
                   help=f"pipeline folder (default: the shipped {DEFAULT_CHECKPOINT})")


def _add_sampling_arguments(p: argparse.ArgumentParser) -> None:
    _checkpoint_argument(p)
    p.add_argument("--sampler", choices=("greedy", "sample", "beam"),
                   help="greedy: most likely token each step; sample: draw from the distribution; beam: keep the "
                        "--beam-width best sequences by guided log-probability (default: the checkpoint's, its "
                        "best measured setting, recorded in pipeline.json)")
    p.add_argument("--beam-width", type=_int_at_least(1), default=4, help="with --sampler beam (default: 4)")
    p.add_argument("--temperature", type=_float_in("temperature", 0, None),
                   help="with --sampler sample: softmax temperature, >= 0 (default: the checkpoint's)")
    p.add_argument("--top-k", type=_int_at_least(0),
                   help="with --sampler sample: keep the k most likely tokens; 0 keeps all (default: the "
                        "checkpoint's)")
    p.add_argument("--top-p", type=_float_in("top-p", 0, 1, open_low=True),
                   help="with --sampler sample: keep the smallest set of tokens holding this probability, in (0, 1]; "
                        "1 keeps all (default: the checkpoint's)")
    p.add_argument("--cfg-scale", type=_float_in("cfg-scale", 1, None), default=None,
                   help="classifier-free guidance scale, >= 1; 1 turns it off (default: the checkpoint's)")
    p.add_argument("--cfg-schedule", choices=("constant", "linear"), default="constant",
                   help="constant scale, or a linear ramp from 1 at the first image token (default: constant)")
    p.add_argument("--cfg-interval", type=_int_at_least(0),
                   help="guide only the first N image tokens, then drop the unconditional half (default: all)")
    p.add_argument("--negative-prompt", help="guide away from this prompt instead of the null caption")


def _sampling_kwargs(args, pipe) -> dict:
    """The sampling flags as pipeline arguments; a flag not given is None, which the pipeline resolves to the
    checkpoint's default (pipe.generation_defaults)."""
    return dict(sampler=args.sampler, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                cfg_scale=args.cfg_scale, cfg_schedule=args.cfg_schedule, cfg_interval=args.cfg_interval,
                beam_width=args.beam_width, negative_prompt=args.negative_prompt)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="t2i",
        description="Autoregressive token-based text-to-image on a synthetic scene world: "
                    "data, prompts, rendering and the judge.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND")

    p = sub.add_parser("render", help="draw the scene a caption describes and judge it",
                       description="Lay out and draw a scene for CAPTION (WORLD.md grammar), write it as a PNG, "
                                   "and print the judge's verdict on it as JSON.")
    p.add_argument("caption", help="e.g. 'the word CAT in blue at the bottom and a red circle at the top'")
    p.add_argument("--out", required=True, type=_output_file(".png"), help="PNG file to write (its folder must exist)")
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="canvas size from a preset (default: tiny, 64 px)")
    p.add_argument("--size", type=_int_at_least(48), help="canvas side in pixels; overrides --preset")
    p.add_argument("--seed", type=int, default=0, help="seed for the unstated details (size, jitter, cells)")
    p.set_defaults(func=cmd_render)

    data = sub.add_parser("data", help="make data sets", description="Make data sets of rendered scenes.")
    data_sub = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser, metavar="ACTION")
    p = data_sub.add_parser("make", help="write scenes as webdataset tar shards",
                            description="Write NUM scenes (png + caption txt + scene json) as webdataset shards "
                                        "and a manifest SPLIT.json in OUT; every file is written atomically.")
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="image size and word length (default: tiny)")
    p.add_argument("--num", type=_int_at_least(1), required=True, help="number of scenes")
    p.add_argument("--out", type=Path, required=True, help="output folder (created if missing)")
    p.add_argument("--seed", type=int, default=0, help="data seed (default: 0)")
    p.add_argument("--split", choices=("train", "heldout"), default="train",
                   help="train: training words; heldout: the held-out words, never in training (default: train)")
    p.add_argument("--shard-size", type=_int_at_least(1), default=1000, help="scenes per shard (default: 1000)")
    p.set_defaults(func=cmd_data_make)

    p = sub.add_parser("prompts", help="print evaluation prompts",
                       description="Print evaluation prompts, one per line, from seeds apart from training data.")
    p.add_argument("--category", choices=CATEGORIES + ("all",), required=True,
                   help="a WORLD.md category, or all (NUM prompts of each, in category order)")
    p.add_argument("--num", type=_int_at_least(1), required=True, help="prompts (per category with 'all')")
    p.add_argument("--seed", type=int, default=0, help="prompt seed (default: 0)")
    p.add_argument("--words", choices=("train", "heldout"), default="train", help="word list for text prompts")
    p.add_argument("--preset", choices=PRESETS, default="tiny", help="longest word from a preset (default: tiny)")
    p.set_defaults(func=cmd_prompts)

    p = sub.add_parser("score", help="judge images against their prompts, or validate the judge",
                       description="Judge PNG images against prompts and write a report (pass rate per category "
                                   "with 95%% CI, overall, word accuracy, CER) and a PNG grid of failures; or, with "
                                   "--validate, check the judge on ground-truth, mismatched and blurred renders.")
    p.add_argument("--images", type=_existing_dir,
                   help="folder of PNGs; sorted by name, k images per prompt in prompt order")
    p.add_argument("--prompts", type=_existing_file, help="text file, one prompt per line")
    p.add_argument("--out", type=_output_file(".json"), help="report JSON to write")
    p.add_argument("--failures", type=_output_file(".png"), help="failure grid PNG (default: beside --out)")
    p.add_argument("--validate", action="store_true", help="validate the judge instead of scoring images")
    p.add_argument("--num", type=_int_at_least(1), default=200, help="with --validate: scenes per category")
    p.add_argument("--size", type=_int_at_least(48), default=64, help="with --validate: canvas side in pixels")
    p.add_argument("--seed", type=int, default=0, help="with --validate: scene seed")
    p.add_argument("--workers", type=_int_at_least(1), help="with --validate: processes (default: all cores)")
    p.set_defaults(func=cmd_score)

    train = sub.add_parser("train", help="train a model", description="Train a model (through accelerate).")
    train_sub = train.add_subparsers(dest="train_command", required=True, parser_class=_Parser, metavar="MODEL")
    p = train_sub.add_parser("vq", help="train the VQ image tokenizer",
                             description="Train the VQ tokenizer on the train shards of --data. Writes OUT/checkpoint."
                                         "safetensors every few hundred steps (atomically), OUT/metrics.jsonl and, at "
                                         "the end, OUT/model (config.json + model.safetensors). Run it under "
                                         "'accelerate launch' for several processes.")
    p.add_argument("--preset", default="tiny",
                   help="a preset name from configs/vq (tiny, tiny-f8, ...) or a JSON file of the same form")
    _add_run_arguments(p, "model")
    p.set_defaults(func=cmd_train_vq)

    p = train_sub.add_parser("ar", help="train the autoregressive decoder",
                             description="Train the caption tokenizer and the decoder on the train shards of --data, "
                                         "with the trained VQ tokenizer --vq. Prepares OUT/tokens.safetensors and "
                                         "OUT/caption_tokenizer once, then writes OUT/checkpoint.safetensors every "
                                         "few hundred steps (atomically), OUT/metrics.jsonl and, at the end, the "
                                         "pipeline folder OUT/pipeline. Run it under 'accelerate launch' for "
                                         "several processes.")
    p.add_argument("--preset", default="tiny", help="a preset name from configs/ar (tiny, small, base) or a JSON file")
    p.add_argument("--vq", type=_existing_dir, required=True, help="VQ model folder (written by 't2i train vq')")
    _add_run_arguments(p, "pipeline")
    p.set_defaults(func=cmd_train_ar)

    for name, text in (("refiner", "train the diffusion refiner (hybrid mode) on VQ reconstructions"),
                       ("diffusion", "train the diffusion-only baseline on the same captions")):
        p = train_sub.add_parser(name, help=text,
                                 description=text[0].upper() + text[1:] + ", through accelerate. Writes "
                                             "OUT/checkpoint.safetensors every few hundred steps (atomically), "
                                             "OUT/metrics.jsonl and, at the end, OUT/model.")
        p.add_argument("--preset", default="tiny", help=f"a preset name from configs/{name} or a JSON file")
        if name == "refiner":
            p.add_argument("--vq", type=_existing_dir, required=True, help="VQ model folder (t2i train vq)")
        else:
            p.add_argument("--tokenizer", type=_existing_dir, required=True,
                           help="caption tokenizer folder of the AR run (e.g. runs/ar-tiny/caption_tokenizer)")
        _add_run_arguments(p, "model")
        p.set_defaults(func=cmd_train_diffusion)

    evaluate = sub.add_parser("eval", help="evaluate a model", description="Evaluate a trained model; prints JSON.")
    eval_sub = evaluate.add_subparsers(dest="eval_command", required=True, parser_class=_Parser, metavar="MODEL")
    p = eval_sub.add_parser("vq", help="evaluate the VQ tokenizer on fresh scenes",
                            description="Encode and decode NUM fresh scenes: PSNR, codebook usage and perplexity, "
                                        "tokens per image, and the judge's pass rate per category on the "
                                        "reconstructions next to the originals. Writes an original | "
                                        "reconstruction PNG grid.")
    p.add_argument("--checkpoint", type=_existing_dir, required=True, help="a folder written by save_pretrained")
    p.add_argument("--num", type=_int_at_least(1), default=500, help="scenes (default: 500)")
    p.add_argument("--size", type=_int_at_least(48), help="image size; must match the tokenizer's")
    p.add_argument("--seed", type=int, default=0, help="scene seed (default: 0)")
    p.add_argument("--workers", type=_int_at_least(1), help="judge processes (default: all cores)")
    p.add_argument("--out", type=_output_file(".json"), help="also write the JSON here")
    p.add_argument("--grid", type=_output_file(".png"),
                   help="original | reconstruction grid (default: ./vq_reconstructions.png)")
    p.set_defaults(func=cmd_eval_vq)

    p = eval_sub.add_parser("ar", help="how well the decoder follows its prompt (quick proxy)",
                            description="Position sensitivity, teacher-forced: on NUM_SCENES fresh single-object "
                                        "scenes, the log-likelihood gap (nats) between the true caption and the "
                                        "same caption with another position, and how often the true position is "
                                        "the most likely of the 9 (chance 1/9). Then the judge's pass rate per "
                                        "category on PROMPTS_PER_CATEGORY generated prompts of each category "
                                        "(0 skips it), with the sampling flags given. Prints JSON.")
    _add_sampling_arguments(p)
    p.add_argument("--num-scenes", type=_int_at_least(1), default=200, help="position scenes (default: 200)")
    p.add_argument("--prompts-per-category", type=_int_at_least(0), default=10,
                   help="judged prompts per category (default: 10, i.e. 80 prompts)")
    p.add_argument("--seed", type=int, default=0, help="scene, prompt and sampling seed (default: 0)")
    p.add_argument("--out", type=_output_file(".json"), help="also write the JSON here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_eval_ar)

    p = eval_sub.add_parser("refiner", help="PSNR and sharpness of refined VQ reconstructions, per setting",
                            description="Render NUM fresh scenes, encode and decode them with the VQ tokenizer, "
                                        "then refine the decodings with every --steps x --strengths setting. "
                                        "Reports, per setting, PSNR to the clean render, gradient energy "
                                        "(sharpness; the clean renders' figure is given for reference) and "
                                        "seconds per image, next to the unrefined decodings. Writes a clean | VQ "
                                        "| refined PNG grid for the setting with the best PSNR.")
    _checkpoint_argument(p)
    p.add_argument("--vq", type=_existing_dir, help="VQ model folder (default: CHECKPOINT/vq)")
    p.add_argument("--refiner", type=_existing_dir, help="refiner model folder (default: CHECKPOINT/refiner)")
    p.add_argument("--num", type=_int_at_least(1), default=200, help="scenes (default: 200)")
    p.add_argument("--steps", type=_number_list(int, 1, None), default=[1, 2, 4, 8],
                   help="comma-separated refine step counts (default: 1,2,4,8)")
    p.add_argument("--strengths", type=_number_list(float, 0, 1), default=[0.3, 0.6, 1.0],
                   help="comma-separated refine strengths in [0, 1], at most the refiner's max_strength "
                        "(default: 0.3,0.6,1.0)")
    p.add_argument("--seed", type=int, default=0, help="scene and noise seed (default: 0)")
    p.add_argument("--out", type=_output_file(".json"), help="also write the JSON here")
    p.add_argument("--grid", type=_output_file(".png"), help="clean | VQ | refined grid (default: ./refiner_eval.png)")
    p.set_defaults(func=cmd_eval_refiner)

    p = sub.add_parser("generate", help="generate images from a prompt",
                       description="Generate images with a trained pipeline (default: the shipped tiny "
                                   "checkpoint). One PROMPT -> --out FILE.png (several images -> one grid); or "
                                   "--prompts FILE -> one PNG per image in --out-dir, named PROMPT_IMAGE.png, "
                                   "ready for 't2i score'. Image i of a run uses seed --seed + i.")
    p.add_argument("prompt", nargs="?", help="e.g. 'a red circle to the left of a blue square'")
    p.add_argument("--out", type=_output_file(".png"), help="PNG to write (its folder must exist)")
    p.add_argument("--prompts", type=_existing_file, help="text file, one prompt per line (instead of PROMPT)")
    p.add_argument("--out-dir", type=Path, help="with --prompts: folder for the PNGs (created if missing)")
    p.add_argument("--num-images", type=_int_at_least(1), default=1, help="images per prompt (default: 1)")
    p.add_argument("--mode", choices=("ar", "hybrid", "diffusion"), default="ar",
                   help="ar: the autoregressive model; hybrid: AR, then the diffusion refiner; diffusion: the "
                        "diffusion-only baseline, guidance 1.5 unless --cfg-scale (default: ar)")
    p.add_argument("--refine-steps", type=_int_at_least(0), default=2,
                   help="with --mode hybrid: refiner steps; 0 returns the AR image (default: 2)")
    p.add_argument("--refine-strength", type=_float_in("refine-strength", 0, 1), default=None,
                   help="with --mode hybrid: noise level the refiner starts from, in [0, 1] (default: 1.0 for a "
                        "residual refiner, as shipped; 0.3 for an image one)")
    p.add_argument("--steps", type=_int_at_least(1), default=20,
                   help="with --mode diffusion: DPM-Solver++ steps (default: 20)")
    _add_sampling_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="seed of the first image (default: 0)")
    p.add_argument("--batch-size", type=_int_at_least(1), default=16, help="with --prompts: prompts per batch")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_generate)

    edit = sub.add_parser("edit", help="edit an image by its tokens",
                          description="Edit an image by its tokens with a trained pipeline: keep some tokens of "
                                      "IMAGE and generate the others for --prompt.")
    edit_sub = edit.add_subparsers(dest="edit_command", required=True, parser_class=_Parser, metavar="HOW")
    for name, text in (("complete", "keep the top --keep-rows token rows of IMAGE and generate the rest"),
                       ("regenerate", "regenerate the tokens inside --box and keep every other token")):
        p = edit_sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        p.add_argument("image", type=_existing_file, help="PNG of the pipeline's size (64x64 for tiny)")
        p.add_argument("--prompt", required=True, help="what the edited image should show")
        if name == "complete":
            p.add_argument("--keep-rows", type=_int_at_least(0), required=True,
                           help="token rows to keep from the top (0 .. grid size; a tiny token row is 4 px)")
        else:
            p.add_argument("--box", type=int, nargs=4, required=True, metavar=("X0", "Y0", "X1", "Y1"),
                           help="pixels; X1 and Y1 exclusive; every token whose cell overlaps it is regenerated")
        p.add_argument("--out", type=_output_file(".png"), required=True, help="PNG to write")
        p.add_argument("--seed", type=int, default=0, help="seed (default: 0)")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        _add_sampling_arguments(p)
        p.set_defaults(func=cmd_edit)

    export = sub.add_parser("export", help="export the decoder to another library",
                            description="Export the decoder of a pipeline for other engines.")
    export_sub = export.add_subparsers(dest="export_command", required=True, parser_class=_Parser, metavar="TO")
    p = export_sub.add_parser("transformers", help="a LlamaForCausalLM folder that transformers loads as is",
                              description="Write config.json + model.safetensors (LlamaForCausalLM), "
                                          "generation_config.json, the caption tokenizer and t2i_layout.json (how "
                                          "to build the input ids) into OUT.")
    _checkpoint_argument(p)
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--verify", action="store_true",
                   help="load OUT with transformers and report the largest logit difference from ours and whether "
                        "greedy generate() gives our tokens, on 8 prompts")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("compare", help="every mode on the same prompts and seeds, judged and timed",
                       description="Run each mode on the same prompts and seeds; write OUT/report.json (per mode "
                                   "and category: pass rate with 95%% CI and n, text accuracy, CER; latency at "
                                   "batch 1, images/s at batch 8, FLOPs per image, training budget) and "
                                   "OUT/grid.png (a row per prompt, a column per mode), and print a table.")
    p.add_argument("--prompts", type=_existing_file, required=True, help="text file, one prompt per line")
    p.add_argument("--modes", default="ar-greedy,ar-sample,ar-beam,hybrid,diffusion",
                   help="comma-separated, from ar-greedy, ar-sample, ar-beam, hybrid, diffusion (default: all)")
    p.add_argument("--seeds", type=_int_at_least(1), default=1, help="images per prompt and mode (default: 1)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    _checkpoint_argument(p)
    p.add_argument("--beam-width", type=_int_at_least(1), default=4, help="for ar-beam (default: 4)")
    p.add_argument("--top-k", type=_int_at_least(1), default=20, help="for ar-sample (default: 20)")
    p.add_argument("--refine-steps", type=_int_at_least(0), default=2, help="for hybrid (default: 2)")
    p.add_argument("--refine-strength", type=_float_in("refine-strength", 0, 1), default=None,
                   help="for hybrid (default: 1.0 for a residual refiner, 0.3 for an image one)")
    p.add_argument("--steps", type=_int_at_least(1), default=20, help="for diffusion (default: 20)")
    p.add_argument("--speed-rounds", type=_int_at_least(1), default=3, help="timed rounds per mode (default: 3)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("release", help="write a pipeline in fp16 for shipping",
                       description="Copy a pipeline folder (VQ, caption tokenizer, decoder) with its weights "
                                   "cast to float16; this is how checkpoints/tiny is made from a training run.")
    p.add_argument("--checkpoint", type=_existing_dir, required=True,
                   help="pipeline folder, e.g. runs/ar-tiny/pipeline")
    p.add_argument("--refiner", type=_existing_dir, help="refiner model folder to include (t2i train refiner)")
    p.add_argument("--diffusion", type=_existing_dir, help="baseline model folder to include (t2i train diffusion)")
    p.add_argument("--default-cfg-scale", type=_float_in("default-cfg-scale", 1, None),
                   help="guidance scale the release uses when a call gives none (default: the checkpoint's)")
    p.add_argument("--default-sampler", choices=("greedy", "sample", "beam"),
                   help="sampler the release uses when a call gives none (default: the checkpoint's)")
    p.add_argument("--default-temperature", type=_float_in("default-temperature", 0, None),
                   help="temperature the release uses when a call gives none (default: the checkpoint's)")
    p.add_argument("--default-top-k", type=_int_at_least(0),
                   help="top-k the release uses when a call gives none; 0: no top-k (default: the checkpoint's)")
    p.add_argument("--default-top-p", type=_float_in("default-top-p", 0, 1, open_low=True),
                   help="top-p the release uses when a call gives none (default: the checkpoint's)")
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. checkpoints/tiny")
    p.set_defaults(func=cmd_release)

    bench = sub.add_parser("bench", help="benchmarks (print JSON)", description="Benchmarks that print JSON.")
    bench_sub = bench.add_subparsers(dest="bench_command", required=True, parser_class=_Parser, metavar="WHAT")
    p = bench_sub.add_parser("data", help="scenes per second (sample, render, PNG-encode) by canvas size",
                             description="Time sampling, rendering and PNG-encoding scenes at each size, "
                                         "interleaved in one run so the sizes compare fairly.")
    p.add_argument("--num", type=_int_at_least(10), default=500, help="scenes per size (default: 500)")
    p.add_argument("--sizes", type=_int_at_least(48), nargs="+", default=[64, 128], help="canvas sides")
    p.set_defaults(func=cmd_bench_data)
    p = bench_sub.add_parser("decode", help="our decode loop vs transformers.generate, ms per token",
                             description="Greedy decoding with our static-cache loop against transformers.generate "
                                         "on the exported weights (identical tokens asserted first): ms per token at "
                                         "batch 1 and 8, CFG on vs off, beam W=4, eager vs torch.compile.")
    _checkpoint_argument(p)
    p.add_argument("--rounds", type=_int_at_least(1), default=3, help="timed rounds per variant (default: 3)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="default: cpu")
    p.add_argument("--dtype", choices=("float32", "bfloat16", "float16"), default="float32",
                   help="weights and activations of both loops; in float32 their greedy tokens must be identical, in "
                        "16 bits the JSON reports how often they agree (default: float32)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variants")
    p.add_argument("--no-transformers", action="store_true", help="skip transformers.generate")
    p.set_defaults(func=cmd_bench_decode)
    p = bench_sub.add_parser("train", help="seconds per AR training step of each preset, side by side",
                             description="Time forward + backward + AdamW steps of each AR preset (a name in "
                                         "configs/ar or a JSON file) on random sequences of its shape, the "
                                         "variants taking turns: seconds per step, images per hour, and the "
                                         "ratio to the first. What equal-compute ablations are sized by.")
    p.add_argument("presets", nargs="+", help="AR presets: names (tiny) or JSON files")
    p.add_argument("--steps", type=_int_at_least(1), default=3, help="steps per variant per round (default: 3)")
    p.add_argument("--rounds", type=_int_at_least(1), default=2, help="rounds (default: 2)")
    p.add_argument("--dtype", choices=("preset", "both", "float32", "bfloat16"), default="preset",
                   help="autocast of the matrix products: each preset's bf16 setting, both, or one for all "
                        "(default: preset)")
    p.add_argument("--codebook-size", type=_int_at_least(2), default=512, help="VQ codes (default: 512)")
    p.add_argument("--grid-size", type=_int_at_least(1), default=16, help="tokens per side (default: 16)")
    p.set_defaults(func=cmd_bench_train)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"t2i {args.command}"
    from tools.judge.ocr import OCRUnavailable

    try:
        args.func(args)
    except (ValueError, FileNotFoundError, OCRUnavailable) as e:  # CaptionError, LayoutError, UsageError too
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
