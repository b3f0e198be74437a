"""``t2i release``: a pipeline (and the diffusion models that join it) in float16, with its generation defaults
and what each model cost to train."""

from __future__ import annotations

import json
from pathlib import Path

from tools.cli.args import SAMPLERS, UsageError, existing_dir, float_in, int_at_least, print_json


def register(sub) -> None:
    p = sub.add_parser("release", help="write a pipeline in fp16 for shipping",
                       description="Copy a pipeline folder (VQ, caption tokenizer, decoder) with its weights "
                                   "cast to float16, with what each model cost to train (training.json) and a "
                                   "model card (README.md: training, scores, limits); this is how "
                                   "checkpoints/tiny is made from a training run.")
    p.add_argument("--checkpoint", type=existing_dir, required=True,
                   help="pipeline folder, e.g. runs/ar-tiny/pipeline")
    p.add_argument("--refiner", type=existing_dir, help="refiner model folder to include (t2i train refiner)")
    p.add_argument("--diffusion", type=existing_dir, help="baseline model folder to include (t2i train diffusion)")
    p.add_argument("--default-guidance-scale", "--default-cfg-scale",
                   type=float_in("default-guidance-scale", 1, None),
                   help="guidance scale the release uses when a call gives none (default: the checkpoint's)")
    p.add_argument("--default-sampler", choices=SAMPLERS,
                   help="sampler the release uses when a call gives none (default: the checkpoint's)")
    p.add_argument("--default-temperature", type=float_in("default-temperature", 0, None),
                   help="temperature the release uses when a call gives none (default: the checkpoint's)")
    p.add_argument("--default-top-k", type=int_at_least(0),
                   help="top-k the release uses when a call gives none; 0: no top-k (default: the checkpoint's)")
    p.add_argument("--default-top-p", type=float_in("default-top-p", 0, 1, open_low=True),
                   help="top-p the release uses when a call gives none (default: the checkpoint's)")
    p.add_argument("--default-beam-width", type=int_at_least(1),
                   help="beams a beam sampler keeps when a call gives no width (default: the checkpoint's)")
    p.add_argument("--scores", action="append", default=[], metavar="LABEL=REPORT.json",
                   help="a 't2i score' report of these weights for the model card's table, with how its images were "
                        "made, e.g. 'defaults, 400 prompts=runs/score/report.json'; may be repeated")
    p.add_argument("--out", type=Path, required=True, help="output folder, e.g. checkpoints/tiny")
    p.set_defaults(func=cmd_release)


def _scores(specs: list[str]) -> dict[str, dict]:
    """--scores LABEL=FILE -> {label: report}, each file a 't2i score' report."""
    scores = {}
    for spec in specs:
        label, sep, file = spec.rpartition("=")
        if not sep or not label.strip():
            raise UsageError(f"--scores: give LABEL=REPORT.json, got {spec!r}")
        try:
            report = json.loads(Path(file).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise UsageError(f"--scores: cannot read a report from {file!r} ({e})") from None
        if not {"categories", "overall", "num_prompts"} <= set(report):
            raise UsageError(f"--scores: {file!r} is not a 't2i score' report (no categories/overall)")
        scores[label.strip()] = report
    return scores


def _check_same_tokenizer(tokenizer, baseline_dir: Path, checkpoint: Path) -> None:
    """The release bundles one caption tokenizer: refuse a baseline whose run trained with another one (its
    pieces would map to other ids: silently wrong images). `python -m tools.retokenize` moves it exactly when
    the two hold the same pieces."""
    trained_with = baseline_dir.parent / "caption_tokenizer"  # where `t2i train diffusion` saves it
    model = trained_with / "spiece.model"
    if model.is_file() and model.read_bytes() != tokenizer.model_proto:
        raise UsageError(f"--diffusion: the baseline was trained with the caption tokenizer {str(trained_with)!r}, "
                         f"not the one of --checkpoint {str(checkpoint)!r}; move it onto that tokenizer with "
                         f"'python -m tools.retokenize --baseline {baseline_dir} --to-tokenizer "
                         f"{checkpoint}/caption_tokenizer --out DIR' (or retrain it)")


def cmd_release(args) -> None:
    import torch

    from ar_model.generation_settings import check_generation_defaults
    from ar_model.pipeline import TextToImage
    from tools.model_card import model_card
    from vq.pretrained import write_text

    scores = _scores(args.scores)  # checked before anything is written
    pipe = TextToImage.from_pretrained(args.checkpoint)  # float32 on the CPU: the release casts to fp16 itself
    release, others, runs = pipe, [], {"ar": args.checkpoint.parent}  # the pipelines that make up the release
    if args.refiner is not None:
        from hybrid.pipeline import HybridPipeline
        from hybrid.refiner import Refiner

        release = HybridPipeline(pipe, Refiner.from_pretrained(args.refiner))  # the AR pipeline and the refiner
        runs["refiner"] = args.refiner.parent
    if args.diffusion is not None:
        from hybrid.baseline import DiffusionBaseline
        from hybrid.pipeline import DiffusionBaselinePipeline

        baseline = DiffusionBaseline.from_pretrained(args.diffusion)
        _check_same_tokenizer(pipe.caption_tokenizer, args.diffusion, args.checkpoint)
        others.append(DiffusionBaselinePipeline(pipe.caption_tokenizer, baseline, prompt_world=pipe.prompt_world))
        runs["baseline"] = args.diffusion.parent
    given = {key: getattr(args, f"default_{key}")
             for key in ("sampler", "temperature", "top_k", "top_p", "guidance_scale", "beam_width")}
    chosen = {k: (None if k == "top_k" and v == 0 else v) for k, v in given.items()
              if v is not None}  # --default-top-k 0: no top-k
    pipe.generation_defaults = check_generation_defaults({**pipe.generation_defaults, **chosen})
    for pipeline in (release, *others):  # each writes its components and lists them in pipeline.json
        pipeline.save_pretrained(args.out, dtype=torch.float16)
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
    components = json.loads((args.out / "pipeline.json").read_text())["components"]
    write_text(args.out / "README.md", model_card(str(args.out), components, pipe.vq.config.image_size, training,
                                                  pipe.generation_defaults, scores))
    sizes = {str(p.relative_to(args.out)): p.stat().st_size for p in sorted(args.out.rglob("*")) if p.is_file()}
    print_json({"release": str(args.out), "dtype": "float16", "bytes": sum(sizes.values()), "files": sizes})
