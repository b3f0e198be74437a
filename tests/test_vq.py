import json

import pytest
import safetensors.torch
import torch

from tools.codebook import codebook_stats
from tools.train.config import VQPreset, VQTrainConfig
from tools.train.loop import batch_indices
from tools.train.vq import train_vq
from vq.config import VQConfig
from vq.model import VQModel
from vq.pretrained import CheckpointError

TINY = dict(image_size=16, base_channels=8, channel_mult=(1, 2, 2), latent_dim=16, codebook_size=64,
            codebook_dim=4, kmeans_init=False)


def model(**overrides) -> VQModel:
    torch.manual_seed(0)
    return VQModel(VQConfig(**{**TINY, **overrides})).eval()


@pytest.mark.parametrize("quantizer", ["vq", "fsq"])
def test_shapes_and_decode_ids_equals_quantized_forward(quantizer):
    m = model(quantizer=quantizer, fsq_levels=(4, 4, 4))
    x = torch.rand(3, 3, 16, 16)
    ids = m.encode(x)
    assert ids.shape == (3, 4, 4) and ids.dtype == torch.int64
    assert 0 <= ids.min() and ids.max() < m.config.vocab_size
    out = m(x)
    assert torch.equal(out.ids, ids)
    assert torch.allclose(m.quantizer.codes_from_ids(ids), out.quantized, atol=1e-6)
    y = m.decode_ids(ids)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.allclose(y, out.images.clamp(0, 1), atol=1e-6)


@pytest.mark.parametrize("channel_mult, grid", [((1, 2, 2), 4), ((1, 2, 2, 2), 2), ((1, 1, 2, 2, 2), 1)])
def test_downsampling_factors(channel_mult, grid):
    m = model(channel_mult=channel_mult)
    assert m.encode(torch.rand(1, 3, 16, 16)).shape == (1, grid, grid)


@pytest.mark.parametrize("norm", ["group", "channel"])
def test_channel_norm_keeps_codes_local_and_group_norm_does_not(norm):
    # A 53 px receptive field (conv_in, 3 res blocks, 2 stride-2 convs): the top-left cell sees pixels < 30 only.
    m = model(image_size=64, norm=norm)
    x = torch.rand(2, 3, 64, 64)
    far = x.clone()
    far[:, :, 40:, 40:] = torch.rand(2, 3, 24, 24)
    with torch.no_grad():
        change = (m.encoder(x)[..., 0, 0] - m.encoder(far)[..., 0, 0]).abs().max().item()
    if norm == "channel":
        assert change < 1e-5
    else:  # GroupNorm's statistics span the image, so a change anywhere moves every latent
        assert change > 1e-3


def test_channel_norm_round_trips_and_trains(tmp_path):
    m = model(norm="channel")
    assert any(type(mod).__name__ == "ChannelNorm" for mod in m.modules())
    assert not any(isinstance(mod, torch.nn.GroupNorm) for mod in m.modules())
    m.save_pretrained(tmp_path)
    loaded = VQModel.from_pretrained(tmp_path)
    assert loaded.config.norm == "channel"
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(m.encode(x), loaded.encode(x))


def test_save_load_round_trip(tmp_path):
    m = model()
    m.train()
    m(torch.rand(4, 3, 16, 16))  # moves the EMA codebook, so the buffers must round-trip too
    m.eval()
    m.save_pretrained(tmp_path)
    loaded = VQModel.from_pretrained(tmp_path)
    assert loaded.config == m.config
    for (k, a), (k2, b) in zip(m.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b), k
    x = torch.rand(2, 3, 16, 16)
    assert torch.equal(m.encode(x), loaded.encode(x))
    assert torch.equal(m.decode_ids(m.encode(x)), loaded.decode_ids(m.encode(x)))


def test_fp16_save_loads_into_float32(tmp_path):
    m = model()
    m.save_pretrained(tmp_path, dtype=torch.float16)
    loaded = VQModel.from_pretrained(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float32
    # the VQ decoder's weights are float16; the encoder and the codebook stay float32 (keep_in_fp32_modules)
    halved = sum(p.numel() * (2 if n.startswith("decoder.") else 4) for n, p in m.named_parameters())
    assert (tmp_path / "model.safetensors").stat().st_size < 1.05 * halved + 8192


def test_fp16_save_keeps_the_encoder_and_a_crowded_codebook_exact(tmp_path):
    # Near-twin codes (cosine 0.99999 apart, as a trained codebook has), which float16 rounding would swap.
    m = model(use_cosine_sim=True)
    torch.manual_seed(1)
    base = torch.nn.functional.normalize(torch.randn(32, 4), dim=-1)
    twins = torch.nn.functional.normalize(base + 3e-3 * torch.randn(32, 4), dim=-1)
    m.quantizer.impl.codebook = torch.cat([base, twins])
    x = torch.rand(8, 3, 16, 16)
    ids = m.encode(x)
    m.save_pretrained(tmp_path, dtype=torch.float16)
    stored = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert {t.dtype for k, t in stored.items() if k.startswith("encoder.")} == {torch.float32}
    assert {t.dtype for k, t in stored.items() if k.startswith("decoder.")} == {torch.float16}
    assert stored["quantizer.impl._codebook.embed"].dtype == torch.float32
    assert torch.equal(VQModel.from_pretrained(tmp_path).encode(x), ids)
    half = VQModel.from_pretrained(tmp_path, dtype=torch.float16)
    assert half.quantizer.dtype == torch.float32 and next(half.encoder.parameters()).dtype == torch.float32
    assert torch.equal(half.encode(x.half()), half.encode(x))  # float16 images are read by the float32 encoder
    assert half.decode_ids(ids).dtype == torch.float16

    # the test has teeth: the codebook cast to float16 moves ids. (A float16 encoder moved 1 id in 250 of the
    # trained tiny tokenizer, recipe section 19; this toy's encoder is not sensitive enough to show it.)
    rounded = model(use_cosine_sim=True)
    rounded.quantizer.impl.codebook = torch.cat([base, twins]).half().float()
    assert not torch.equal(rounded.encode(x), ids)


def test_overfits_one_batch():
    torch.manual_seed(0)
    m = VQModel(VQConfig(**{**TINY, "kmeans_init": True}))
    x = torch.zeros(4, 3, 16, 16)
    x[:, 0, 4:12, 4:12] = 1.0  # a red square, and variations of it
    x[1, 1] = 0.5
    x[2, :, :8] = 1.0
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for _ in range(150):
        out = m(x)
        loss = torch.nn.functional.mse_loss(out.images, x) + out.commit_loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_resumed_run_repeats_the_uninterrupted_losses(tmp_path):
    images = (torch.rand(40, 3, 16, 16) * 255).to(torch.uint8)
    preset = VQPreset(VQConfig(**TINY), VQTrainConfig(batch_size=8, max_steps=6, warmup_steps=2, log_every=1,
                                                      checkpoint_every=3))
    train_vq(preset, images, tmp_path / "a", progress=False)
    train_vq(preset, images, tmp_path / "b", progress=False, stop_after=4)  # "killed" after step 4
    train_vq(preset, images, tmp_path / "b", progress=False, resume=True)  # resumes from the step-3 checkpoint
    a = {r["step"]: r["loss"] for r in map(json.loads, (tmp_path / "a" / "metrics.jsonl").read_text().splitlines())}
    b = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in b] == [1, 2, 3, 4, 4, 5, 6]
    assert all(r["loss"] == a[r["step"]] for r in b)
    with pytest.raises(ValueError, match="--resume"):
        train_vq(preset, images, tmp_path / "a", progress=False)


def test_batch_order_is_a_seeded_permutation_per_epoch():
    first_epoch = torch.cat([batch_indices(0, s, 10, 5) for s in range(2)])
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert torch.equal(batch_indices(0, 3, 10, 5), batch_indices(0, 3, 10, 5))
    assert not torch.equal(batch_indices(0, 0, 10, 5), batch_indices(1, 0, 10, 5))


def test_codebook_stats():
    stats = codebook_stats(torch.tensor([5, 5, 0, 0]))
    assert stats["usage"] == 0.5 and abs(stats["perplexity"] - 2.0) < 1e-9


@pytest.mark.parametrize("bad, match", [
    (torch.rand(2, 3, 32, 32), r"shape \(B, 3, 16, 16\), got \(2, 3, 32, 32\)"),
    (torch.rand(2, 1, 16, 16), r"shape \(B, 3, 16, 16\), got \(2, 1, 16, 16\)"),
    (torch.rand(3, 16, 16), r"got \(3, 16, 16\)"),
    (torch.rand(2, 3, 16, 16) * 255, r"\[0, 1\], got values in"),
    (torch.rand(2, 3, 16, 16) - 0.5, r"\[0, 1\], got values in"),
    ((torch.rand(2, 3, 16, 16) * 255).to(torch.uint8), "floating point"),
])
def test_bad_images(bad, match):
    with pytest.raises(ValueError, match=match):
        model().encode(bad)


@pytest.mark.parametrize("bad, match", [
    (torch.full((1, 4, 4), 64), r"ids must be in \[0, 63\]"),
    (torch.full((1, 4, 4), -1), r"ids must be in \[0, 63\]"),
    (torch.zeros(1, 8, 8, dtype=torch.long), r"shape \(B, 4, 4\), got \(1, 8, 8\)"),
    (torch.zeros(1, 4, 4), "integer tensor"),
])
def test_bad_ids(bad, match):
    with pytest.raises(ValueError, match=match):
        model().decode_ids(bad)


def test_bad_checkpoint_folders(tmp_path):
    m = model()
    with pytest.raises(CheckpointError, match="does not exist"):
        VQModel.from_pretrained(tmp_path / "nowhere")
    m.save_pretrained(tmp_path / "ok")
    for name in ("config.json", "model.safetensors"):
        broken = tmp_path / f"no-{name}"
        m.save_pretrained(broken)
        (broken / name).unlink()
        with pytest.raises(CheckpointError, match=f"has no {name}"):
            VQModel.from_pretrained(broken)
    truncated = tmp_path / "truncated"
    m.save_pretrained(truncated)
    data = (truncated / "model.safetensors").read_bytes()
    (truncated / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        VQModel.from_pretrained(truncated)
    mismatched = tmp_path / "mismatched"
    m.save_pretrained(mismatched)
    config = json.loads((mismatched / "config.json").read_text())
    (mismatched / "config.json").write_text(json.dumps({**config, "base_channels": 16}))
    with pytest.raises(CheckpointError, match="does not fit"):
        VQModel.from_pretrained(mismatched)
    (mismatched / "config.json").write_text(json.dumps({**config, "colour": 1}))
    with pytest.raises(CheckpointError, match="unknown VQConfig keys"):
        VQModel.from_pretrained(mismatched)
    (mismatched / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not a valid VQConfig"):
        VQModel.from_pretrained(mismatched)


def test_bad_configs():
    with pytest.raises(ValueError, match="channel_mult must have 3, 4 or 5 entries"):
        VQConfig(channel_mult=(1, 2))
    with pytest.raises(ValueError, match="quantizer must be one of"):
        VQConfig(quantizer="rvq")
    with pytest.raises(ValueError, match=r"norm must be one of \['group', 'channel'\], got 'batch'"):
        VQConfig(norm="batch")
    with pytest.raises(ValueError, match="VQ preset must be one of"):
        VQPreset.from_name("huge")


def test_argument_checks_refuse_bools_nan_and_out_of_range_values():
    from vq.pretrained import check_int, check_number

    check_int("steps", 3, 0, 10)
    check_int("top_k", None, 1, optional=True)
    check_number("scale", 1.5, 1)
    for value in (True, 1.0, "2", -1, 11):
        with pytest.raises(ValueError, match=rf"steps must be an integer in \[0, 10\], got {value!r}"):
            check_int("steps", value, 0, 10)
    with pytest.raises(ValueError, match=r"^top_p must be None or a number in \(0, 1\], got 0$"):
        check_number("top_p", 0, 0, 1, low_open=True, optional=True)
    with pytest.raises(ValueError, match=r"guidance_scale must be a number >= 1 \(1 turns guidance off\), got nan"):
        check_number("guidance_scale", float("nan"), 1, note=" (1 turns guidance off)")
    with pytest.raises(ValueError, match="base_channels must be a positive integer, got False"):
        VQConfig(base_channels=False)
