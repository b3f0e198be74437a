"""The checkpoint that ships in checkpoints/tiny: it loads, is what the README says, and the README's first
command reproduces the image committed under docs/ (same seed, same pixels)."""

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import safe_open

from ar_model.pipeline import TextToImage
from vq.model import VQModel

from .test_cli import run

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "checkpoints" / "tiny"


def test_shipped_checkpoint_is_fp16_and_small():
    sizes = sum(p.stat().st_size for p in SHIPPED.rglob("*") if p.is_file())
    assert sizes < 25_000_000, sizes
    weights = sorted(SHIPPED.rglob("*.safetensors"))
    assert {p.parent.name for p in weights} == {"vq", "decoder", "refiner", "baseline"}
    for path in weights:  # every floating tensor on disk is fp16 (read from the file, not from a loaded model)
        exact = VQModel.keep_in_fp32_modules if path.parent.name == "vq" else ()  # but what picks the VQ's ids
        with safe_open(str(path), framework="pt") as f:
            dtypes = {f.get_slice(name).get_dtype() for name in f.keys() if not name.startswith(exact)}
            kept = {f.get_slice(name).get_dtype() for name in f.keys() if name.startswith(exact)}
        assert dtypes <= {"F16", "I64", "I32", "BOOL"} and "F16" in dtypes, (path, dtypes)
        assert kept <= ({"F32", "BOOL"} if path.parent.name == "vq" else set()), (path, kept)
    pipe = TextToImage.from_pretrained(SHIPPED)
    assert pipe.decoder.lm_head.weight.dtype == torch.float32  # fp16 on disk, float32 once loaded
    index = json.loads((SHIPPED / "pipeline.json").read_text())
    assert index["generation_defaults"] == pipe.generation_defaults
    assert set(index["components"]) == {p.name for p in SHIPPED.iterdir() if p.is_dir()}  # all 5 listed
    assert pipe.vq.config.grid_size == pipe.decoder.config.grid_size == 16


def test_readme_command_reproduces_the_docs_image(capsys, tmp_path):
    readme = (ROOT / "README.md").read_text()
    prompt = "the word CAT in blue at the bottom and a red circle at the top"
    command = f't2i generate "{prompt}" --out image.png --num-images 4 --seed 0'  # no sampling flags: the defaults
    lines = readme.splitlines()
    assert command in lines[lines.index("```bash") + 1]  # the README's first command
    code, _, _ = run(capsys, "generate", prompt, "--out", str(tmp_path / "image.png"), "--num-images", "4",
                     "--seed", "0", "--quiet")
    assert code == 0
    made = np.array(Image.open(tmp_path / "image.png"))
    committed = np.array(Image.open(ROOT / "docs" / "cat_and_circle.png"))
    assert made.shape == committed.shape and np.array_equal(made, committed)


def test_shipped_hybrid_and_baseline_load_and_budgets_match():
    from hybrid.pipeline import DiffusionBaselinePipeline, HybridPipeline
    from tools.image_metrics import psnr

    hybrid = HybridPipeline.from_pretrained(SHIPPED)
    hybrid.set_progress_bar_config(disable=True)
    assert hybrid.refiner.config.target == "residual"
    prompts = ["a red circle", "a blue square at the top"]
    plain = hybrid(prompts, refine_steps=0, sampler="sample", top_k=20, generator=torch.Generator().manual_seed(0))
    refined = hybrid(prompts, sampler="sample", top_k=20, generator=torch.Generator().manual_seed(0))
    for a, b in zip(plain.images, refined.images):
        # The trained refiner touches up the AR image: a few grey levels, not a new image.
        assert a.size == b.size == (64, 64) and a.tobytes() != b.tobytes()
        assert psnr(b, a) > 30, psnr(b, a)
    baseline = DiffusionBaselinePipeline.from_pretrained(SHIPPED)
    assert baseline.baseline.unet.dtype == torch.float32
    # The research comparison is fair only if both were trained for about the same wall-clock time.
    training = json.loads((SHIPPED / "training.json").read_text())
    ar, diffusion = training["ar"]["train_seconds"], training["baseline"]["train_seconds"]
    assert abs(diffusion - ar) / ar <= 0.10, (ar, diffusion)
