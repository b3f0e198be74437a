"""The diffusers calling convention, for the three text-to-image pipelines: a diffusers user's session (load with
``torch_dtype``, ``.to``, a call with ``num_images_per_prompt``, ``guidance_scale``, ``generator``,
``output_type`` and ``callback_on_step_end``), the pipeline's parts (``components``, ``config``, ``device``,
``dtype``) and a save / load round trip that gives the same images."""

import numpy as np
import pytest
import torch
from PIL import Image

from ar_model.pipeline import TextToImage
from hybrid.pipeline import DiffusionBaselinePipeline, HybridPipeline
from tests.test_hybrid import baseline, refiner

PROMPT = "a red circle"


@pytest.fixture(scope="module")
def folder(pipe, tmp_path_factory):
    """A folder holding all three pipelines (as the shipped checkpoint does)."""
    path = tmp_path_factory.mktemp("pipelines") / "tiny"
    HybridPipeline(pipe, refiner()).save_pretrained(path)
    DiffusionBaselinePipeline(pipe.caption_tokenizer, baseline(pipe.caption_tokenizer.vocab_size)).save_pretrained(path)
    return path


KINDS = {"ar": TextToImage, "hybrid": HybridPipeline, "diffusion": DiffusionBaselinePipeline}
# Steps of one call: the image tokens of the tiny decoder (16), the refiner's 2 after them, the baseline's 3.
EXTRA = {"ar": {}, "hybrid": {"refine_steps": 2}, "diffusion": {"num_inference_steps": 3}}
STEPS = {"ar": 16, "hybrid": 16 + 2, "diffusion": 3}


def load(kind, folder):
    p = KINDS[kind].from_pretrained(folder, torch_dtype=torch.float32).to("cpu")
    p.set_progress_bar_config(disable=True)
    return p


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_diffusers_users_session(kind, folder):
    pipe = load(kind, folder)
    assert pipe.device == torch.device("cpu") and pipe.dtype == torch.float32
    seen = []

    def count_steps(p, step, timestep, callback_kwargs):
        assert p is pipe
        seen.append((step, sorted(callback_kwargs)))
        return callback_kwargs

    out = pipe(PROMPT, num_images_per_prompt=4, guidance_scale=2.0, generator=torch.Generator().manual_seed(0),
               output_type="np", callback_on_step_end=count_steps, **EXTRA[kind])
    size = 16
    assert isinstance(out.images, np.ndarray) and out.images.shape == (4, size, size, 3)
    assert out.images.dtype == np.float32 and 0 <= out.images.min() and out.images.max() <= 1
    assert [s for s, _ in seen] == list(range(STEPS[kind])), "one callback per step, numbered in order"
    if kind != "diffusion":
        assert seen[0][1] == ["ids"] and out.ids.shape == (4, 4, 4)
    if kind != "ar":
        assert seen[-1][1] == ["latents"]
    # The same call with output_type "pil" and "pt" shows the same pixels.
    again = dict(num_images_per_prompt=4, guidance_scale=2.0, **EXTRA[kind])
    pil = pipe(PROMPT, generator=torch.Generator().manual_seed(0), **again).images
    pt = pipe(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt", **again).images
    assert isinstance(pil[0], Image.Image) and isinstance(pt, torch.Tensor) and pt.shape == (4, 3, size, size)
    assert np.array_equal(np.stack([np.asarray(im) for im in pil]).astype(np.float32) / 255, out.images)
    assert torch.equal(pt.permute(0, 2, 3, 1), torch.from_numpy(out.images))
    assert repr(out).startswith("TextToImageOutput(images=array(4, 16, 16, 3)")


@pytest.mark.parametrize("kind", list(KINDS))
def test_save_and_load_give_identical_images(kind, folder, tmp_path):
    pipe = load(kind, folder)
    pipe.save_pretrained(tmp_path / "copy")
    copy = load(kind, tmp_path / "copy")
    run = (lambda p: p([PROMPT, "the word CAT"], num_images_per_prompt=2, generator=torch.Generator().manual_seed(3),
                       **EXTRA[kind]).images)
    assert [im.tobytes() for im in run(pipe)] == [im.tobytes() for im in run(copy)]


def test_components_config_and_to(folder):
    hybrid = load("hybrid", folder)
    assert list(hybrid.components) == ["vq", "caption_tokenizer", "decoder", "refiner", "scheduler"]
    assert hybrid.config["_class_name"] == "HybridPipeline" and hybrid.config["decoder"] == "ARDecoder"
    assert hybrid.config["generation_defaults"] == hybrid.ar.generation_defaults
    with pytest.raises(TypeError):
        hybrid.config["decoder"] = "x"  # read-only, as diffusers' FrozenDict
    # Components build another pipeline, as in diffusers: TextToImage from the hybrid's parts.
    parts = {k: v for k, v in hybrid.components.items() if k in ("vq", "caption_tokenizer", "decoder")}
    ar = TextToImage(**parts)
    assert ar.decoder is hybrid.decoder
    diffusion = load("diffusion", folder)
    assert list(diffusion.components) == ["caption_tokenizer", "baseline", "scheduler"]
    # to(dtype) casts every model and returns the pipeline; to(device, dtype) both.
    assert hybrid.to(torch.bfloat16) is hybrid
    assert hybrid.dtype == torch.bfloat16
    assert {p.dtype for p in hybrid.refiner.parameters() if p.is_floating_point()} == {torch.bfloat16}
    assert {p.dtype for p in hybrid.vq.parameters() if p.is_floating_point()} == {torch.bfloat16}
    out = hybrid(PROMPT, generator=torch.Generator().manual_seed(0), output_type="pt")
    assert out.images.dtype == torch.float32 and out.images.shape == (1, 3, 16, 16)
    hybrid.to("cpu", torch.float32)
    assert hybrid.dtype == torch.float32
    with pytest.raises(ValueError, match="to\\(\\) takes a device"):
        hybrid.to(3)
    with pytest.raises(ValueError, match="dtype must be a floating torch.dtype"):
        hybrid.to(torch.int64)


def test_torch_dtype_loads_in_that_dtype(folder):
    ar = TextToImage.from_pretrained(folder, torch_dtype=torch.bfloat16)
    assert ar.dtype == torch.bfloat16
    assert {p.dtype for p in ar.vq.decoder.parameters()} == {torch.bfloat16}
    # what picks the ids is kept exact (VQModel.keep_in_fp32_modules): the encoder and the codebook
    assert {p.dtype for p in ar.vq.encoder.parameters()} == {torch.float32}
    assert ar.vq.quantizer.dtype == torch.float32
    assert ar(["a red circle"], generator=torch.Generator().manual_seed(0), output_type="pt").images.dtype \
        in (torch.bfloat16, torch.float32)
    with pytest.raises(TypeError):
        TextToImage.from_pretrained(folder, dtype=torch.float32)  # the old name is gone: diffusers' is torch_dtype


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("kwargs, message", [
    (dict(height=32), "height must be 16 \\(this checkpoint makes 16x16 images\\) or None, got 32"),
    (dict(width=8), "width must be 16"),
    (dict(output_type="latent"), "output_type must be one of \\['pil', 'np', 'pt'\\], got 'latent'"),
    (dict(callback_on_step_end=3), "callback_on_step_end must be callable"),
    (dict(num_images_per_prompt=0), "num_images_per_prompt must be an integer >= 1, got 0"),
    (dict(negative_prompt=["a", "b"]), "negative_prompt must be a string or a list of strings with one per prompt"),
])
def test_bad_arguments_are_named(kind, folder, kwargs, message):
    with pytest.raises(ValueError, match=message):
        load(kind, folder)(PROMPT, **kwargs, **EXTRA[kind])


def test_height_and_width_of_the_checkpoint_are_accepted(folder):
    pipe = load("ar", folder)
    a = pipe(PROMPT, height=16, width=16, generator=torch.Generator().manual_seed(0))
    b = pipe(PROMPT, generator=torch.Generator().manual_seed(0))
    assert a.images[0].tobytes() == b.images[0].tobytes()


def test_num_inference_steps_of_a_decoder_is_its_token_count(folder):
    pipe = load("ar", folder)
    pipe(PROMPT, num_inference_steps=16)
    with pytest.raises(ValueError, match="num_inference_steps must be 16 \\(one step per image token"):
        pipe(PROMPT, num_inference_steps=20)


def test_negative_prompt_steers_the_baseline(folder):
    pipe = load("diffusion", folder)
    run = (lambda **kw: pipe(PROMPT, num_inference_steps=3, guidance_scale=3.0,
                             generator=torch.Generator().manual_seed(0), **kw).images[0].tobytes())
    assert run(negative_prompt="a blue square") != run()
    assert run(negative_prompt="a blue square") == run(negative_prompt=["a blue square"])


def test_callback_may_replace_the_latents(folder):
    pipe = load("diffusion", folder)

    def to_zero(p, step, timestep, kw):
        return {"latents": torch.zeros_like(kw["latents"])} if step == 2 else kw

    out = pipe(PROMPT, num_inference_steps=3, callback_on_step_end=to_zero, output_type="np")
    assert np.allclose(out.images, 0.5, atol=1 / 255)  # latents 0 after the last step: mid-grey
