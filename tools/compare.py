"""``t2i compare``: every mode on the same prompts and seeds, judged alike, timed alike, in one run.

Modes: ``ar-default`` (the checkpoint's own sampling defaults), ``ar-greedy``, ``ar-sample``, ``ar-beam`` (the AR
pipeline), ``hybrid`` (AR greedy, then the refiner), ``diffusion`` (the baseline). The report gives, per mode and
category, the judge's pass rate with a 95% CI and n, text accuracy and CER; per mode, latency per image at batch 1 and images/s at batch 8 (the modes take turns,
so a noisy machine slows them alike), FLOPs per image (``torch.utils.flop_counter``), and the training budget
recorded in the checkpoint; and sharpness (gradient energy, ``tools.image_metrics``) next to that of clean
renders of the same prompts. The grid has a row per prompt and a column per mode (first seed).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image, ImageDraw, ImageFont
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from tools.grid import image_grid
from tools.image_metrics import gradient_energy
from tools.judge.report import summarize
from tools.judge.verdict import score
from tools.world import layout, parse_caption, render_any_size

MODES = ("ar-default", "ar-greedy", "ar-sample", "ar-beam", "hybrid", "diffusion")


@dataclass
class ModeRunner:
    """One mode: ``generate(prompts, seeds) -> images`` with one generator per image."""

    name: str
    pipe: object
    kwargs: dict

    def generate(self, prompts: list[str], seeds: list[int]) -> list[Image.Image]:
        gens = [torch.Generator().manual_seed(s) for s in seeds]
        return self.pipe(prompts, num_images_per_prompt=1, generator=gens, **self.kwargs).images


def load_modes(checkpoint: Path, modes: list[str], beam_width: int = 4, top_k: int | None = 20,
               temperature: float = 0.7, refine_steps: int | None = None, refine_strength: float | None = None,
               diffusion_steps: int | None = None, device: str | None = None,
               torch_dtype: torch.dtype = torch.float32) -> list[ModeRunner]:
    """The runners of ``modes`` on ``device`` in ``torch_dtype``; a setting left None takes the pipeline's
    default. "ar-default" is a call with no sampling argument: the checkpoint's own defaults (pipeline.json)."""
    from ar_model.pipeline import TextToImage
    from hybrid.pipeline import (
        DEFAULT_DIFFUSION_STEPS,
        DEFAULT_REFINE_STEPS,
        DiffusionBaselinePipeline,
        HybridPipeline,
    )

    refine_steps = DEFAULT_REFINE_STEPS if refine_steps is None else refine_steps
    diffusion_steps = DEFAULT_DIFFUSION_STEPS if diffusion_steps is None else diffusion_steps

    runners, ar = [], None
    for mode in modes:
        if mode.startswith("ar-") or mode == "hybrid":
            ar = ar or TextToImage.from_pretrained(checkpoint, torch_dtype=torch_dtype, device=device)
            ar.set_progress_bar_config(disable=True)
        if mode == "ar-default":
            runners.append(ModeRunner(mode, ar, {}))
        elif mode == "ar-greedy":
            runners.append(ModeRunner(mode, ar, {"sampler": "greedy"}))
        elif mode == "ar-sample":
            runners.append(ModeRunner(mode, ar, {"sampler": "sample", "top_k": top_k, "temperature": temperature}))
        elif mode == "ar-beam":
            runners.append(ModeRunner(mode, ar, {"sampler": "beam", "beam_width": beam_width}))
        elif mode == "hybrid":
            from ar_model.pipeline_utils import load_component
            from hybrid.refiner import Refiner

            refiner = load_component(checkpoint, "refiner", Refiner).to(device=device, dtype=torch_dtype)
            # refine_strength None: the pipeline takes the refiner's default
            settings = {"sampler": "greedy", "refine_steps": refine_steps, "refine_strength": refine_strength}
            hybrid = HybridPipeline(ar, refiner)
            hybrid.set_progress_bar_config(disable=True)
            runners.append(ModeRunner(mode, hybrid, settings))
        else:
            pipe = DiffusionBaselinePipeline.from_pretrained(checkpoint, torch_dtype=torch_dtype, device=device)
            pipe.set_progress_bar_config(disable=True)
            runners.append(ModeRunner(mode, pipe, {"num_inference_steps": diffusion_steps}))
    return runners


def _flops_per_image(runner: ModeRunner, prompt: str) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        runner.generate([prompt], [0])
    return counter.get_total_flops()


def training_step_flops(model: torch.nn.Module, batch: int) -> int:
    """FLOPs of one training step (forward, loss, backward) at ``batch``, counted by torch's flop counter."""
    import torch.nn.functional as F

    from ar_model.model import ARDecoder

    model = model.float().train()
    counter = FlopCounterMode(display=False)
    with counter:
        if isinstance(model, ARDecoder):
            c = model.config
            seq = torch.randint(0, c.vocab_size, (batch, c.max_seq_len))
            logits = model(seq[:, :-1])
            loss = F.cross_entropy(logits[:, c.prefix_len - 1:].reshape(-1, c.vocab_size),
                                   seq[:, c.prefix_len:].reshape(-1))
        else:
            s = model.config.image_size
            x, t = torch.randn(batch, 3, s, s), torch.randint(0, 1000, (batch,))
            condition = (model.null_captions(batch) if hasattr(model, "null_captions")
                         else torch.randn(batch, 3, s, s))
            loss = F.mse_loss(model(x, t, condition), x)
        loss.backward()
    model.zero_grad(set_to_none=True)
    model.eval()
    return counter.get_total_flops()


def _speed(runners: list[ModeRunner], prompts: list[str], rounds: int) -> dict[str, dict]:
    batch8 = (prompts * 8)[:8]
    times: dict[str, dict[str, list[float]]] = {r.name: {"b1": [], "b8": []} for r in runners}
    for r in runners:  # warm-up
        r.generate(batch8[:1], [0])
    for _ in range(rounds):
        for r in runners:
            start = time.perf_counter()
            r.generate(batch8[:1], [0])
            times[r.name]["b1"].append(time.perf_counter() - start)
            start = time.perf_counter()
            r.generate(batch8, list(range(8)))
            times[r.name]["b8"].append(time.perf_counter() - start)
    return {name: {"latency_s_batch1": round(statistics.median(t["b1"]), 3),
                   "images_per_s_batch8": round(8 / statistics.median(t["b8"]), 3)} for name, t in times.items()}


def clean_sharpness(prompts: list[str], size: int, seed: int = 0) -> float:
    """Mean gradient energy of clean renders of the prompts (one layout each): what a perfect model's images
    would score, so a mode's figure reads as too blurry (below) or noisy (far above)."""
    import random

    from tools.world import CaptionError, LayoutError

    energies = []
    for i, prompt in enumerate(prompts):
        try:
            scene = layout(parse_caption(prompt), random.Random(seed * 1_000_003 + i))
        except (CaptionError, LayoutError):  # a free-form prompt, or one no layout satisfies, has no clean render
            continue
        energies.append(gradient_energy(render_any_size(scene, size)))
    return sum(energies) / len(energies) if energies else float("nan")


def comparison_grid(prompts: list[str], columns: dict[str, list[Image.Image]], tile: int = 128) -> Image.Image:
    """A row per prompt (its text on the left), a column per mode (its name on top)."""
    font = ImageFont.load_default(size=12)
    label_w, head_h = 260, 20
    names = list(columns)

    def labels(draw: ImageDraw.ImageDraw, row: int, y: int) -> None:
        if row == 0:
            for j, name in enumerate(names):
                draw.text((label_w + j * (tile + 4) + 4, 4), name, fill="black", font=font)
        draw.multiline_text((4, y + 4), "\n".join(_wrap(prompts[row], 40)), fill="black", font=font)

    # light grey between tiles, so white-background images show their edges
    return image_grid([columns[name][i] for i in range(len(prompts)) for name in names], len(names), tile=tile,
                      gap=4, margin=(label_w, head_h, 4, 4), background=(210, 210, 210), before_row=labels)


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, width)[:6]


def judged_prompts(prompts: list[str]) -> list[bool]:
    """Which prompts the judge can score: those the scene world's caption grammar parses. Free-form prompts are
    still generated, timed and shown in the grid."""
    from tools.world import CaptionError

    parsed = []
    for prompt in prompts:
        try:
            parse_caption(prompt)
            parsed.append(True)
        except CaptionError:
            parsed.append(False)
    return parsed


def compare(checkpoint: Path, prompts: list[str], modes: list[str], seeds: int, speed_rounds: int = 3,
            batch_size: int = 16, on_progress=None, **mode_settings) -> tuple[dict, Image.Image]:
    """Run, judge and time every mode; ``on_progress(report)`` is called with the report so far after each mode
    (so a long run that fails late keeps what it measured). Only the prompts the caption grammar parses are
    judged (``judged_prompts``); the report counts the others."""
    runners = load_modes(checkpoint, modes, **mode_settings)
    training = json.loads((checkpoint / "training.json").read_text()) if (checkpoint / "training.json").exists() \
        else None
    judged = judged_prompts(prompts)
    report: dict = {"checkpoint": str(checkpoint), "num_prompts": len(prompts), "seeds": seeds, "complete": False,
                    "num_judged_prompts": sum(judged), "modes": {}}
    first_images: dict[str, list[Image.Image]] = {}
    for r in runners:
        images, verdicts = [], []
        jobs = [(i, s) for s in range(seeds) for i in range(len(prompts))]
        for start in tqdm(range(0, len(jobs), batch_size), desc=r.name):
            chunk = jobs[start:start + batch_size]
            batch = r.generate([prompts[i] for i, _ in chunk],
                               [1000 * s + j for j, (_, s) in enumerate(chunk, start)])
            images += batch
            verdicts += [score(im, prompts[i]) for im, (i, _) in zip(batch, chunk) if judged[i]]
        first_images[r.name] = images[:len(prompts)]
        if "clean_render_gradient_energy" not in report:  # the size of the images the modes make
            report["clean_render_gradient_energy"] = clean_sharpness(prompts, images[0].width)
        # jobs run seed by seed over all prompts: verdicts of one seed are contiguous, same counts per prompt
        summary = summarize(verdicts, sum(judged), images_per_prompt=seeds) if any(judged) else \
            {"num_prompts": 0, "num_images": 0, "overall": None, "pooled": None, "categories": {}, "text": None}
        summary["gradient_energy"] = sum(gradient_energy(im) for im in images) / len(images)
        summary["flops_per_image"] = _flops_per_image(r, prompts[0])
        report["modes"][r.name] = summary
        if on_progress:
            on_progress(report)
    for name, speed in _speed(runners, prompts, speed_rounds).items():
        report["modes"][name].update(speed)
    report["training"] = training
    # FLOPs per training step of each trained model, at the batch size it was trained with.
    batch = {name: ((training or {}).get(name) or {}).get("preset_train", {}).get("batch_size", 32)
             for name in ("ar", "refiner", "baseline")}
    models = {"ar": next((r.pipe for r in runners if r.name.startswith("ar-")), None),
              "refiner": next((r.pipe.refiner for r in runners if r.name == "hybrid"), None),
              "baseline": next((r.pipe.baseline for r in runners if r.name == "diffusion"), None)}
    report["training_flops_per_step"] = {
        name: training_step_flops(model.decoder if name == "ar" else model, batch[name])
        for name, model in models.items() if model is not None}
    report["complete"] = True
    return report, comparison_grid(prompts, first_images)


def table(report: dict) -> str:
    """The report as a readable text table: modes in rows, categories in columns."""
    modes = report["modes"]
    categories = list(next(iter(modes.values()))["categories"])
    unjudged = report["num_prompts"] - report.get("num_judged_prompts", report["num_prompts"])
    head = ["mode", *categories, "overall", "pooled [95% CI]", "word acc", "CER", "grad E", "s/img b1",
            "img/s b8", "GFLOP/img"]
    rows = [head]
    for name, m in modes.items():
        text = m.get("text") or {}
        pooled = m["pooled"]
        rows.append([name, *[f"{m['categories'][c]['pass_rate']:.2f}" for c in categories],
                     "-" if m["overall"] is None else f"{m['overall']:.3f}",
                     "-" if pooled is None else
                     f"{pooled['pass_rate']:.3f} [{pooled['ci95'][0]:.3f}, {pooled['ci95'][1]:.3f}]",
                     f"{text.get('word_accuracy', float('nan')):.2f}", f"{text.get('cer', float('nan')):.2f}",
                     f"{m['gradient_energy']:.4f}",
                     f"{m['latency_s_batch1']:.2f}", f"{m['images_per_s_batch8']:.2f}",
                     f"{m['flops_per_image'] / 1e9:.2f}"])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in rows]
    lines.append(f"grad E: mean squared Sobel gradient; clean renders of these prompts: "
                 f"{report['clean_render_gradient_energy']:.4f}")
    if unjudged:
        lines.append(f"{unjudged} of {report['num_prompts']} prompts are outside the scene world's caption grammar: "
                     "generated, timed and in the grid, not judged")
    return "\n".join(lines)
