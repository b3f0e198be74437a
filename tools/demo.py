"""``t2i demo``: a local Gradio app over the three pipelines of a checkpoint (``pip install -e ".[demo]"``).

One prompt in; a gallery out, each image captioned with the judge's verdict when the prompt parses in the scene
world's grammar (the reasons when it fails), and the generation time. The pipelines are loaded on first use of
their mode and kept, so the first image of a mode pays for loading it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import torch

from ar_model.sampling import DRAWING_SAMPLERS
from tools.cli.args import seeded_generators

MODES = ("ar", "hybrid", "diffusion")
SAMPLERS = ("default", "greedy", "sample", "beam", "beam_sample")


class DemoBackend:
    """What the app's button runs: the pipelines of ``checkpoint`` on ``device`` in ``dtype``, and the judge."""

    def __init__(self, checkpoint: str | Path, device: str = "cpu", dtype: torch.dtype = torch.float32):
        self.checkpoint, self.device, self.dtype = Path(checkpoint), device, dtype
        self._pipes: dict[str, object] = {}

    def pipeline(self, mode: str):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
        if mode not in self._pipes:
            from ar_model.pipeline import TextToImage
            from hybrid.pipeline import DiffusionBaselinePipeline, HybridPipeline

            cls = {"ar": TextToImage, "hybrid": HybridPipeline, "diffusion": DiffusionBaselinePipeline}[mode]
            pipe = cls.from_pretrained(self.checkpoint, torch_dtype=self.dtype, device=self.device)
            pipe.set_progress_bar_config(disable=True)
            self._pipes[mode] = pipe
        return self._pipes[mode]

    def defaults(self) -> dict:
        """The AR pipeline's generation defaults (what "default" means in the sampler and guidance controls)."""
        return dict(self.pipeline("ar").generation_defaults)

    def generate(self, prompt: str, mode: str, sampler: str, guidance_scale: float, top_k: int,
                 temperature: float, seed: int, num_images: int) -> tuple[list[tuple], str]:
        """(gallery items: (image, verdict caption), a one-line summary with the time it took)."""
        prompt = (prompt or "").strip()
        if not prompt:
            raise ValueError("prompt is empty; try 'a red circle above a blue square'")
        pipe = self.pipeline(mode)
        kwargs: dict = {"guidance_scale": float(guidance_scale)}
        if mode != "diffusion" and sampler != "default":
            kwargs["sampler"] = sampler
            if sampler in DRAWING_SAMPLERS:
                kwargs.update(top_k=int(top_k), temperature=float(temperature))
        generators = seeded_generators(int(seed), int(num_images))
        start = time.perf_counter()
        out = pipe(prompt, num_images_per_prompt=int(num_images), generator=generators, **kwargs)
        seconds = time.perf_counter() - start
        verdicts = judge_all(out.images, prompt)
        items = [(image, caption) for image, caption in zip(out.images, verdicts)]
        passed = sum(v.startswith("PASS") for v in verdicts)
        judged = "" if verdicts[0].startswith("not judged") else f"; the judge passed {passed} of {len(verdicts)}"
        summary = (f"{len(out.images)} image(s) in {seconds:.2f} s ({mode}, {_settings(kwargs)}, seeds "
                   f"{int(seed)}..{int(seed) + int(num_images) - 1}){judged}")
        return items, summary


def _settings(kwargs: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in kwargs.items()) if kwargs else "the checkpoint's defaults"


def judge_all(images: list, prompt: str) -> list[str]:
    """The judge's verdict on each image as a caption: "PASS", "FAIL: reasons", or why it was not judged."""
    from tools.judge.ocr import OCRUnavailable
    from tools.judge.verdict import score
    from tools.world import CaptionError

    out = []
    for image in images:
        try:
            verdict = score(image, prompt)
        except CaptionError as e:
            return [f"not judged: the prompt is outside the scene world's grammar ({e})"] * len(images)
        except OCRUnavailable:
            return ["not judged: the prompt has a word and Tesseract OCR is not installed"] * len(images)
        out.append("PASS" if verdict.passed else "FAIL: " + "; ".join(verdict.reasons))
    return out


def build_demo(backend: DemoBackend, on_error: Callable[[Exception], None] | None = None):
    """The Gradio Blocks app over ``backend``."""
    import gradio as gr

    defaults = backend.defaults()
    with gr.Blocks(title="t2i-ar demo") as demo:
        gr.Markdown("# t2i-ar: autoregressive text-to-image\nPrompts follow the scene world's grammar "
                    "(`t2i prompts --grammar`), e.g. *the word CAT in blue at the bottom and a red circle at the "
                    "top*. Under each image: the judge's verdict.")
        with gr.Row():
            with gr.Column(scale=2):
                prompt = gr.Textbox(label="Prompt", value="a red circle above a blue square", elem_id="prompt")
                with gr.Row():
                    mode = gr.Radio(list(MODES), value="ar", label="Mode", elem_id="mode")
                    sampler = gr.Radio(list(SAMPLERS), value="default", label="Sampler (AR and hybrid)")
                with gr.Row():
                    guidance = gr.Slider(1.0, 6.0, value=float(defaults["guidance_scale"]), step=0.1,
                                         label="Guidance scale")
                    top_k = gr.Slider(0, 100, value=int(defaults["top_k"] or 0), step=1,
                                      label="Top-k (sample, beam_sample; 0 keeps all)")
                    temperature = gr.Slider(0.1, 2.0, value=float(defaults["temperature"]), step=0.05,
                                            label="Temperature (sample, beam_sample)")
                with gr.Row():
                    seed = gr.Number(value=0, precision=0, label="Seed")
                    num_images = gr.Slider(1, 8, value=4, step=1, label="Images")
                run = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Images", columns=4, height="auto", elem_id="gallery")
                summary = gr.Markdown(elem_id="summary")

        def on_click(*values):
            try:
                return backend.generate(*values)
            except ValueError as e:  # a bad prompt or setting: said in the app, never a traceback
                if on_error is not None:
                    on_error(e)
                raise gr.Error(str(e)) from None

        run.click(on_click, [prompt, mode, sampler, guidance, top_k, temperature, seed, num_images],
                  [gallery, summary])
    return demo
