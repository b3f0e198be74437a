"""Refiner, diffusion baseline, their pipelines and trainer, on tiny diffusers UNets (seconds on a CPU)."""

import json
from dataclasses import replace

import pytest
import torch

from hybrid.baseline import DiffusionBaseline
from hybrid.config import BaselineConfig, RefinerConfig
from hybrid.pipeline import DiffusionBaselinePipeline, HybridPipeline, RefinerPipeline
from hybrid.refiner import Refiner
from tools.train.config import ARPreset, DiffusionPreset, VQPreset
from tools.train.diffusion import train_diffusion


UNET = dict(image_size=16, block_out_channels=(8, 16), layers_per_block=1, norm_num_groups=4)


def refiner() -> Refiner:
    torch.manual_seed(0)
    return Refiner(RefinerConfig(**UNET)).eval()


def baseline(vocab: int = 448) -> DiffusionBaseline:
    torch.manual_seed(0)
    return DiffusionBaseline(BaselineConfig(**UNET, attention_head_dim=8, text_vocab_size=vocab,
                                            max_caption_tokens=32, text_dim=16, text_layers=1, text_heads=2)).eval()


def refine(r: Refiner, images, steps, strength, generator=None) -> torch.Tensor:
    """The refiner's denoising loop, which its pipeline owns."""
    pipe = RefinerPipeline(r)
    pipe.set_progress_bar_config(disable=True)
    return pipe(images, steps, strength, generator)


def sample(m: DiffusionBaseline, tokenizer, caption_ids, steps, guidance_scale, generator=None) -> torch.Tensor:
    """The baseline's denoising loop, which its pipeline owns."""
    pipe = DiffusionBaselinePipeline(tokenizer, m)
    pipe.set_progress_bar_config(disable=True)
    return pipe.denoise(caption_ids, steps, guidance_scale, generator)


def count_unet_calls(model) -> list:
    calls = []
    original = model.unet.forward

    def spy(*args, **kwargs):
        calls.append(args[0].shape[0])
        return original(*args, **kwargs)

    model.unet.forward = spy
    return calls


def test_refiner_save_load_round_trip(tmp_path):
    r = refiner()
    r.save_pretrained(tmp_path / "r")
    loaded = Refiner.from_pretrained(tmp_path / "r")
    assert loaded.config == r.config
    x = torch.rand(2, 3, 16, 16)
    a = refine(r, x, 3, 0.5, generator=[torch.Generator().manual_seed(i) for i in range(2)])
    b = refine(loaded, x, 3, 0.5, generator=[torch.Generator().manual_seed(i) for i in range(2)])
    assert a.shape == x.shape and torch.isfinite(a).all() and torch.equal(a, b)


def test_baseline_save_load_round_trip(tmp_path, tokenizer):
    m = baseline(vocab=tokenizer.vocab_size)
    m.save_pretrained(tmp_path / "b")
    loaded = DiffusionBaseline.from_pretrained(tmp_path / "b")
    ids = m.captions([[1, 2, 3], [4]])
    a = sample(m, tokenizer, ids, steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    b = sample(loaded, tokenizer, ids, steps=3, guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 3, 16, 16) and torch.equal(a, b)


@pytest.mark.parametrize("steps, strength", [(1, 0.3), (3, 0.5), (5, 1.0), (8, 0.001)])
def test_refiner_runs_exactly_the_asked_steps(steps, strength):
    r = refiner()
    calls = count_unet_calls(r)
    refine(r, torch.rand(2, 3, 16, 16), steps, strength)
    assert calls == [2] * steps


@pytest.mark.parametrize("steps, guidance_scale, rows", [(4, 3.0, 4), (7, 1.0, 2)])
def test_baseline_runs_exactly_the_asked_steps(steps, guidance_scale, rows, tokenizer):
    m = baseline(vocab=tokenizer.vocab_size)
    calls = count_unet_calls(m)
    sample(m, tokenizer, m.captions([[1], [2]]), steps=steps, guidance_scale=guidance_scale)
    assert calls == [rows] * steps  # guidance doubles the batch


def test_hybrid_refine_steps_zero_returns_the_ar_image(pipe):
    hybrid = HybridPipeline(pipe, refiner())
    ar = pipe("a red circle", sampler="sample", generator=torch.Generator().manual_seed(3))
    same = hybrid("a red circle", sampler="sample", refine_steps=0, generator=torch.Generator().manual_seed(3))
    assert same.images[0].tobytes() == ar.images[0].tobytes() and torch.equal(same.ids, ar.ids)
    refined = hybrid("a red circle", sampler="sample", refine_steps=2, generator=torch.Generator().manual_seed(3))
    assert refined.images[0].tobytes() != ar.images[0].tobytes() and torch.equal(refined.ids, ar.ids)


@pytest.mark.parametrize("mode", ["hybrid", "diffusion"])
def test_same_seed_same_image(pipe, mode):
    if mode == "hybrid":
        p = HybridPipeline(pipe, refiner())
        run = (lambda seed: p(["a red circle", "the word CAT"], num_images_per_prompt=2, sampler="sample", refine_steps=2,
                              generator=torch.Generator().manual_seed(seed)))
    else:
        p = DiffusionBaselinePipeline(pipe.caption_tokenizer, baseline(pipe.caption_tokenizer.vocab_size))
        p.set_progress_bar_config(disable=True)
        run = (lambda seed: p(["a red circle", "the word CAT"], num_images_per_prompt=2, num_inference_steps=3,
                              generator=torch.Generator().manual_seed(seed)))
    a, b, c = run(0), run(0), run(1)
    assert len(a.images) == 4 and a.prompts == ["a red circle"] * 2 + ["the word CAT"] * 2
    assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images]
    assert [im.tobytes() for im in a.images] != [im.tobytes() for im in c.images]


def test_every_pipeline_saves_and_loads_its_folder(pipe, tmp_path):
    hybrid = HybridPipeline(pipe, refiner())
    diffusion = DiffusionBaselinePipeline(pipe.caption_tokenizer, baseline(pipe.caption_tokenizer.vocab_size))
    for p in (hybrid, diffusion):
        p.set_progress_bar_config(disable=True)
        p.save_pretrained(tmp_path / "both")
    index = json.loads((tmp_path / "both" / "pipeline.json").read_text())
    assert index["components"] == ["vq", "caption_tokenizer", "decoder", "refiner", "baseline"]
    assert index["generation_defaults"] == pipe.generation_defaults  # the AR pipeline's settings are kept
    for cls, made in ((HybridPipeline, hybrid), (DiffusionBaselinePipeline, diffusion)):
        loaded = cls.from_pretrained(tmp_path / "both")
        loaded.set_progress_bar_config(disable=True)
        run = (lambda p: p(["a red circle", "the word CAT"], generator=torch.Generator().manual_seed(0),
                           **({"num_inference_steps": 3} if cls is DiffusionBaselinePipeline else {})))
        a, b = run(made), run(loaded)
        assert [im.tobytes() for im in a.images] == [im.tobytes() for im in b.images]
    assert b.ids is None and a.prompts == ["a red circle", "the word CAT"]  # the baseline makes no tokens
    diffusion.save_pretrained(tmp_path / "alone")
    assert json.loads((tmp_path / "alone" / "pipeline.json").read_text())["components"] == [
        "caption_tokenizer", "baseline"]


@pytest.mark.parametrize("kind", ["ar", "hybrid", "diffusion"])
def test_one_progress_mechanism_for_every_pipeline(pipe, kind):
    import io

    from ar_model.pipeline import TextToImage

    made = {"ar": lambda: TextToImage(pipe.vq, pipe.caption_tokenizer, pipe.decoder),
            "hybrid": lambda: HybridPipeline(TextToImage(pipe.vq, pipe.caption_tokenizer, pipe.decoder), refiner()),
            "diffusion": lambda: DiffusionBaselinePipeline(pipe.caption_tokenizer,
                                                           baseline(pipe.caption_tokenizer.vocab_size))}[kind]()
    loops = {"ar": ["tokens"], "hybrid": ["tokens", "refining"], "diffusion": ["denoising"]}[kind]
    kwargs = {"num_inference_steps": 2} if kind == "diffusion" else {}
    shown = io.StringIO()
    made.set_progress_bar_config(file=shown, mininterval=0)
    made("a red circle", **kwargs)
    assert all(f"{desc}: " in shown.getvalue() for desc in loops), shown.getvalue()
    hidden = io.StringIO()
    made.set_progress_bar_config(file=hidden, disable=True)
    made("a red circle", **kwargs)
    assert hidden.getvalue() == ""


class Oracle(torch.nn.Module):
    """A stand-in UNet that knows the clean image: it returns the exact noise (or v) for any noisy input, so a
    sampler that reads the schedule and the prediction type right must land on the clean image."""

    def __init__(self, clean: torch.Tensor, prediction_type: str):
        super().__init__()
        from diffusers import DDPMScheduler

        self.clean, self.prediction_type = clean, prediction_type
        self.alphas = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.double()

    def forward(self, x, t, **kwargs):
        from types import SimpleNamespace

        x, a = x[:, :3].double(), self.alphas[t.long()].view(-1, 1, 1, 1)
        noise = (x - a.sqrt() * self.clean) / (1 - a).sqrt()
        out = noise if self.prediction_type == "epsilon" else a.sqrt() * noise - (1 - a).sqrt() * self.clean
        return SimpleNamespace(sample=out.float())


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_samplers_recover_the_image_an_oracle_knows(prediction_type, tokenizer):
    clean = torch.rand(1, 3, 16, 16).double() * 2 - 1  # in [-1, 1]
    m = DiffusionBaseline(BaselineConfig(**UNET, attention_head_dim=8, text_vocab_size=tokenizer.vocab_size,
                                         max_caption_tokens=8, text_dim=16, text_layers=1, text_heads=2,
                                         prediction_type=prediction_type))
    m.unet = Oracle(clean, prediction_type)
    images = sample(m, tokenizer, m.captions([[1], [2]]), steps=20, guidance_scale=3.0,
                    generator=torch.Generator().manual_seed(0))
    assert (images * 2 - 1 - clean).abs().max() < 2e-2
    r = Refiner(RefinerConfig(**UNET, prediction_type=prediction_type))
    r.unet = Oracle(clean, prediction_type)
    condition = torch.rand(2, 3, 16, 16)  # the oracle ignores it: what comes out is its clean image
    refined = refine(r, condition, 4, 0.5, generator=torch.Generator().manual_seed(0))
    assert (refined * 2 - 1 - clean).abs().max() < 2e-2
    # A residual refiner samples (image - condition) / residual_scale from pure noise and adds it back.
    condition = torch.rand(1, 3, 16, 16).double()
    scale = 0.1
    r = Refiner(RefinerConfig(**UNET, prediction_type=prediction_type, target="residual", residual_scale=scale))
    r.unet = Oracle((clean - (condition * 2 - 1)) / scale, prediction_type)
    refined = refine(r, condition.float(), 4, 1.0, generator=torch.Generator().manual_seed(0))
    assert (refined * 2 - 1 - clean).abs().max() < 2e-2


def test_residual_refiner_starts_from_noise_over_a_zero_residual():
    r = Refiner(RefinerConfig(**UNET, target="residual", residual_scale=0.05)).eval()
    first_inputs = []
    original = r.unet.forward
    r.unet.forward = lambda x, t, **kw: first_inputs.append(x[:, :3].clone()) or original(x, t, **kw)
    a, b = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    refine(r, a, 1, 0.3, generator=torch.Generator().manual_seed(0))
    refine(r, b, 1, 0.3, generator=torch.Generator().manual_seed(0))
    # Same noise, different AR images: the noisy residual does not depend on the image (an image refiner's does).
    assert torch.equal(first_inputs[0], first_inputs[1])


def test_default_strength_follows_the_refiner_target(pipe):
    from hybrid.refiner import default_strength

    assert default_strength(RefinerConfig(**UNET, target="residual")) == 1.0
    assert default_strength(RefinerConfig(**UNET)) == 0.3
    low = Refiner(RefinerConfig(**UNET, max_strength=0.2)).eval()
    assert default_strength(low.config) == 0.2
    calls = count_unet_calls(low)
    HybridPipeline(pipe, low)("a red circle", refine_steps=1)  # the default never exceeds what it was trained on
    assert calls == [1]


def test_refiner_refuses_more_noise_than_it_was_trained_on(pipe):
    torch.manual_seed(0)
    r = Refiner(RefinerConfig(**UNET, max_strength=0.5)).eval()
    refine(r, torch.rand(1, 3, 16, 16), 2, 0.5)
    with pytest.raises(ValueError, match=r"refine_strength must be a number in \[0, 0.5\] \(the refiner was trained"):
        refine(r, torch.rand(1, 3, 16, 16), 2, 0.6)
    calls = count_unet_calls(r)
    with pytest.raises(ValueError, match="refine_strength must be"):
        HybridPipeline(pipe, r)("a red circle", refine_strength=0.7)
    assert calls == []
    with pytest.raises(ValueError, match=r"max_strength must be a number in \(0, 1\], got 0"):
        RefinerConfig(**UNET, max_strength=0)


@pytest.mark.parametrize("kwargs, match", [
    (dict(refine_steps=-1), "refine_steps must be"), (dict(refine_strength=1.5), "refine_strength must be"),
    (dict(refine_strength="a lot"), "refine_strength must be"),
])
def test_hybrid_bad_arguments(pipe, kwargs, match):
    with pytest.raises(ValueError, match=match):
        HybridPipeline(pipe, refiner())("a red circle", **kwargs)


@pytest.mark.parametrize("kwargs, match", [
    (dict(guidance_scale=0.5), "guidance_scale must be"), (dict(num_inference_steps=0), "num_inference_steps must be"),
    (dict(prompt=""), "prompt is empty"), (dict(num_images_per_prompt=0), "num_images_per_prompt must be"),
])
def test_diffusion_bad_arguments(pipe, kwargs, match):
    p = DiffusionBaselinePipeline(pipe.caption_tokenizer, baseline(pipe.caption_tokenizer.vocab_size))
    with pytest.raises(ValueError, match=match):
        p(**{"prompt": "a red circle", **kwargs})


def diffusion_training(kind: str, max_steps: int):
    """Eight red squares on black and a preset for ``kind``: what the two trainer tests below train on."""
    torch.manual_seed(0)
    images = torch.zeros(8, 3, 16, 16, dtype=torch.uint8)
    images[:, 0, 4:12, 4:12] = 255
    model = {**UNET, "attention_head_dim": 8, "max_caption_tokens": 8, "text_dim": 16, "text_layers": 1,
             "text_heads": 2} if kind == "baseline" else UNET
    conditions = images.clone() if kind == "refiner" else torch.randint(0, 50, (8, 8))
    preset = DiffusionPreset.from_dict("diffusion" if kind == "baseline" else kind, {"model": model, "train": {
        "batch_size": 8, "lr": 3e-3, "warmup_steps": 2, "max_steps": max_steps, "log_every": 1,
        "checkpoint_every": 5}})
    if kind == "baseline":  # the vocabulary of the captions' tokenizer, filled in as `t2i train diffusion` does
        preset = preset.with_model(text_vocab_size=50)
    return preset, images, conditions


def logged(folder) -> list[dict]:
    return [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["refiner", "baseline"])
def test_training_loss_falls(kind, tmp_path):
    preset, images, conditions = diffusion_training(kind, max_steps=60)
    train_diffusion(preset, images, conditions, tmp_path / "full", progress=False)
    full = logged(tmp_path / "full")
    first, last = sum(r["loss"] for r in full[:5]) / 5, sum(r["loss"] for r in full[-5:]) / 5
    assert last < first / 2, (first, last)
    assert (tmp_path / "full" / "model" / "model.safetensors").exists()


@pytest.mark.parametrize("kind", ["refiner", "baseline"])
def test_resumed_training_repeats_the_losses(kind, tmp_path):
    preset, images, conditions = diffusion_training(kind, max_steps=12)
    train_diffusion(preset, images, conditions, tmp_path / "full", progress=False)
    train_diffusion(preset, images, conditions, tmp_path / "cut", progress=False, stop_after=7)
    train_diffusion(preset, images, conditions, tmp_path / "cut", progress=False, resume=True)
    by_step = {r["step"]: r["loss"] for r in logged(tmp_path / "full")}
    cut = logged(tmp_path / "cut")
    # Stopped after step 7, resumed from the checkpoint of step 5: steps 6 and 7 run again, with the same losses.
    assert [r["step"] for r in cut] == [1, 2, 3, 4, 5, 6, 7, *range(6, 13)]
    assert all(r["loss"] == pytest.approx(by_step[r["step"]], rel=1e-6) for r in cut)
    assert (tmp_path / "cut" / "model" / "model.safetensors").exists()


def test_refiner_trains_only_on_the_asked_part_of_the_schedule(tmp_path, monkeypatch):
    seen = []
    original = Refiner.forward
    monkeypatch.setattr(Refiner, "forward",
                        lambda self, x, t, c: seen.append((x.clone(), t.clone(), c)) or original(self, x, t, c))
    images = torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8)
    preset = DiffusionPreset.from_dict("refiner", {"model": UNET, "train": {
        "batch_size": 8, "max_steps": 6, "warmup_steps": 1, "timestep_fraction": 0.3}})
    train_diffusion(preset, images, images.clone(), tmp_path / "r", progress=False)
    t = torch.cat([t for _, t, _ in seen])
    assert len(t) == 48 and t.max() < 300 and t.min() >= 0
    assert (t < 30).any() and (t > 200).any()  # both groups below are checked
    assert Refiner.from_pretrained(tmp_path / "r" / "model").config.max_strength == 0.3
    # Timestep t carries the noise of step t: small t, nearly the clean image (the condition is the image here).
    # (diffusers' DPM-Solver noises in mirrored order before set_timesteps; training must not use it.)
    for noisy, t, clean in seen:
        error = (noisy - clean).pow(2).flatten(1).mean(1)
        assert (error[t < 30] < 0.02).all() and (error[t > 200] > 0.05).all(), (t, error)
    with pytest.raises(ValueError, match=r"timestep_fraction must be in \(0, 1\], got 0"):
        DiffusionPreset.from_dict("refiner", {"train": {"timestep_fraction": 0}})


def test_residual_refiner_learns_the_scaled_difference(tmp_path, monkeypatch):
    seen = []
    original = Refiner.forward
    monkeypatch.setattr(Refiner, "forward",
                        lambda self, x, t, c: seen.append((x.clone(), t.clone(), c)) or original(self, x, t, c))
    generator = torch.Generator().manual_seed(0)
    conditions = torch.randint(20, 236, (8, 3, 16, 16), dtype=torch.uint8, generator=generator)
    images = (conditions.int() + torch.randint(-8, 9, conditions.shape, generator=generator)).to(torch.uint8)
    preset = DiffusionPreset.from_dict("refiner", {"model": {**UNET, "target": "residual"}, "train": {
        "batch_size": 8, "max_steps": 6, "warmup_steps": 1}})
    train_diffusion(preset, images, conditions, tmp_path / "r", progress=False)
    config = Refiner.from_pretrained(tmp_path / "r" / "model").config
    expected = float(((images.float() - conditions.float()) / 127.5).std())
    assert config.target == "residual" and config.residual_scale == pytest.approx(expected, rel=1e-6)
    # At small t the noisy input is nearly the scaled residual (unit spread), not the image.
    residual = (images.float() - conditions.float()) / 127.5 / expected
    checked = 0
    for noisy, t, condition in seen:
        for i in torch.nonzero(t < 100).flatten():
            j = int(((conditions.float() / 127.5 - 1) - condition[i]).abs().flatten(1).sum(1).argmin())  # which pair
            assert (noisy[i] - residual[j]).pow(2).mean() < 0.05
            checked += 1
    assert checked > 0
    # A resumed run keeps the scale its weights were trained with, even if the data now says otherwise.
    train_diffusion(preset, images, conditions, tmp_path / "cut", progress=False, stop_after=2)
    louder = (conditions.int() + 2 * (images.int() - conditions.int())).clamp(0, 255).to(torch.uint8)
    train_diffusion(preset, louder, conditions, tmp_path / "cut", progress=False, resume=True)
    assert Refiner.from_pretrained(tmp_path / "cut" / "model").config.residual_scale == config.residual_scale
    with pytest.raises(ValueError, match="the images equal their conditions"):
        train_diffusion(preset, conditions, conditions.clone(), tmp_path / "zero", progress=False)
    with pytest.raises(ValueError, match=r"target must be one of \['image', 'residual'\], got 'noise'"):
        RefinerConfig(**UNET, target="noise")
    with pytest.raises(ValueError, match="residual_scale must be a number > 0, got 0"):
        RefinerConfig(**UNET, residual_scale=0)


def test_cross_attention_only_at_the_lowest_levels():
    cfg = dict(UNET, block_out_channels=(8, 16, 16), attention_head_dim=8, text_vocab_size=50, max_caption_tokens=8,
               text_dim=16, text_layers=1, text_heads=2)
    default = DiffusionBaseline(BaselineConfig(**cfg)).unet.config
    assert default.down_block_types == ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D")
    one = DiffusionBaseline(BaselineConfig(**cfg, cross_attention_levels=1)).unet.config
    assert one.down_block_types == ("DownBlock2D", "DownBlock2D", "CrossAttnDownBlock2D")
    assert one.up_block_types == ("CrossAttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    for bad in (0, 4, True, 1.5):
        with pytest.raises(ValueError, match="cross_attention_levels must be None or an integer in"):
            BaselineConfig(**cfg, cross_attention_levels=bad)


@pytest.mark.parametrize("load", [VQPreset.from_dict, ARPreset.from_dict,
                                  lambda d: DiffusionPreset.from_dict("diffusion", d)])
def test_every_preset_rejects_unknown_keys(load):
    with pytest.raises(ValueError, match=r"unknown preset keys \['modle'\]; allowed: \['model', 'train'\]"):
        load({"modle": {}, "train": {}})
    with pytest.raises(ValueError, match="batch_size must be a positive integer, got 0"):
        load({"train": {"batch_size": 0}})


@pytest.mark.parametrize("kind", ["refiner", "baseline"])
def test_warm_start_continues_the_weights_and_counts_their_time(kind, tmp_path):
    preset, images, conditions = diffusion_training(kind, max_steps=40)
    train_diffusion(preset, images, conditions, tmp_path / "first", progress=False)
    first = logged(tmp_path / "first")
    prior = json.loads((tmp_path / "first" / "training.json").read_text())
    short = replace(preset, train=replace(preset.train, max_steps=4, lr=1e-5))
    train_diffusion(short, images, conditions, tmp_path / "fresh", progress=False)
    train_diffusion(short, images, conditions, tmp_path / "warm", progress=False, init_from=tmp_path / "first" / "model")
    # The same batches, timesteps and noise (functions of seed and step): the warm start's loss is the trained one's.
    warm, fresh = (sum(r["loss"] for r in logged(tmp_path / name)) for name in ("warm", "fresh"))
    assert warm < fresh / 2, (warm, fresh, first[-1])
    record = json.loads((tmp_path / "warm" / "training.json").read_text())
    assert record["init_from"]["train_seconds"] == prior["train_seconds"] <= record["train_seconds"]
    model_cls = Refiner if kind == "refiner" else DiffusionBaseline
    assert model_cls.from_pretrained(tmp_path / "warm" / "model").config == \
        model_cls.from_pretrained(tmp_path / "first" / "model").config  # the refiner's residual scale kept
    with pytest.raises(ValueError, match="--init-from: .* is neither a model folder"):
        train_diffusion(short, images, conditions, tmp_path / "x", progress=False, init_from=tmp_path)
