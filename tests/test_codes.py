"""Codes extracted once (t2i data encode) and read from disk a batch at a time by the decoder's trainer."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tools.codes import CodeShards, RowStore, encode_source
from tools.sources import read_images
from tools.train.ar import train_ar

from .conftest import CAPTIONS
from .test_ar import losses, tiny_preset
from .test_cli import run


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A user's folder of 11 image + caption pairs, of several sizes."""
    out = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for i in range(11):
        h, w = (16, 16) if i % 3 else (20, 28)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(out / f"img{i:02d}.png")
        (out / f"img{i:02d}.txt").write_text(CAPTIONS[i % len(CAPTIONS)])
    return out


@pytest.fixture(scope="module")
def encoded(folder, pipe, tmp_path_factory):
    out = tmp_path_factory.mktemp("codes")
    encode_source(str(folder), pipe.vq, out, shard_size=4, batch_size=3, progress=False)
    return out


def test_encoded_shards_hold_the_codes_of_every_image(folder, encoded, pipe):
    manifest = json.loads((encoded / "codes.json").read_text())
    assert manifest["num"] == 11 and [s["num"] for s in manifest["shards"]] == [4, 4, 3]
    shards = CodeShards(encoded)
    images, captions, report = read_images(str(folder), 16, 100, progress=False)
    expected = pipe.vq.encode(images.float() / 255).flatten(1).to(torch.int16)
    assert len(shards) == 11 and torch.equal(shards.codes[torch.arange(11)], expected)
    assert torch.equal(shards.codes[torch.tensor([10, 0, 5])], expected[[10, 0, 5]])  # any rows, any order
    assert shards.captions_and_keys() == (captions, report.kept_keys)
    shards.check_tokenizer(pipe.vq)
    other = type(pipe.vq)(pipe.vq.config)
    with pytest.raises(ValueError, match="was encoded with another VQ tokenizer"):
        shards.check_tokenizer(other)


def test_row_store_reads_only_what_is_asked(tmp_path):
    for i, n in enumerate((3, 5)):
        np.save(tmp_path / f"{i}.npy", np.arange(n * 2, dtype=np.int16).reshape(n, 2) + 100 * i)
    store = RowStore([tmp_path / "0.npy", tmp_path / "1.npy"])
    assert len(store) == 8 and isinstance(store.arrays[0], np.memmap)
    assert store[torch.tensor([2, 3, 7])].tolist() == [[4, 5], [100, 101], [108, 109]]


def test_training_from_codes_equals_training_from_images_and_resumes(folder, encoded, pipe, tmp_path):
    """The same batches (a function of seed and step) of the same codes: the same losses to the last bit, and a
    run stopped and resumed repeats them."""
    pipe.vq.save_pretrained(tmp_path / "vq")
    images, captions, report = read_images(str(folder), 16, 100, progress=False)
    preset = tiny_preset(max_steps=8, caption_dropout=0.5)
    train_ar(preset, tmp_path / "vq", images, captions, tmp_path / "images", progress=False)
    shards = CodeShards(encoded)
    train_ar(preset, tmp_path / "vq", None, None, tmp_path / "codes", progress=False, code_shards=shards)
    train_ar(preset, tmp_path / "vq", None, None, tmp_path / "cut", progress=False, code_shards=shards, stop_after=6)
    train_ar(preset, tmp_path / "vq", None, None, tmp_path / "cut", progress=False, code_shards=shards, resume=True)
    from_images, from_codes = losses(tmp_path / "images" / "metrics.jsonl"), losses(tmp_path / "codes" / "metrics.jsonl")
    assert from_codes == from_images
    cut = losses(tmp_path / "cut" / "metrics.jsonl")
    assert [s for s, _ in cut] == [1, 2, 3, 4, 5, 6, 6, 7, 8] and dict(cut) == dict(from_codes)
    with pytest.raises(ValueError, match="was made from 11 pre-extracted codes but 11 images were given"):
        train_ar(preset, tmp_path / "vq", images, captions, tmp_path / "codes", progress=False, resume=True)


def test_cli_encode_then_train(capsys, folder, pipe, tmp_path):
    pipe.vq.save_pretrained(tmp_path / "vq")
    code, stdout, _ = run(capsys, "data", "encode", str(folder), "--vq", str(tmp_path / "vq"), "--out",
                          str(tmp_path / "codes"))
    assert code == 0 and json.loads(stdout)["num"] == 11
    (tmp_path / "p.json").write_text(json.dumps({"model": {"max_caption_tokens": 64, "dim": 32, "n_layers": 1,
                                                           "n_heads": 4, "n_kv_heads": 2},
                                                 "train": {"batch_size": 2, "max_steps": 2, "warmup_steps": 1,
                                                           "text_vocab_size": 320}}))
    code, _, stderr = run(capsys, "train", "ar", "--preset", str(tmp_path / "p.json"), "--vq", str(tmp_path / "vq"),
                          "--codes", str(tmp_path / "codes"), "--out", str(tmp_path / "run"))
    assert code == 0, stderr
    assert (tmp_path / "run" / "pipeline" / "decoder" / "model.safetensors").is_file()
    code, _, stderr = run(capsys, "train", "ar", "--vq", str(tmp_path / "vq"), "--codes", str(tmp_path / "codes"),
                          "--data", str(folder), "--out", str(tmp_path / "both"))
    assert code == 2 and "give --data (images and captions) or --codes" in stderr
    code, _, stderr = run(capsys, "train", "ar", "--vq", str(tmp_path / "vq"), "--codes", str(folder),
                          "--out", str(tmp_path / "none"))
    assert code == 2 and "has no codes.json; write it with 't2i data encode'" in stderr


def test_row_store_slices_limits_and_subsets(tmp_path):
    from tools.codes import RowSubset

    for i, n in enumerate((3, 5)):
        np.save(tmp_path / f"{i}.npy", np.arange(n * 2, dtype=np.uint8).reshape(n, 2) + 100 * i)
    store = RowStore([tmp_path / "0.npy", tmp_path / "1.npy"], limit=6)
    assert len(store) == 6 and store.shape == (6, 2) and store.dtype == torch.uint8
    assert store[2:5].tolist() == [[4, 5], [100, 101], [102, 103]] and store[4:100].shape == (2, 2)
    with pytest.raises(IndexError, match="outside the store's 6"):
        store[torch.tensor([6])]  # past the limit, though the file holds it
    subset = RowSubset(store, [5, 0])
    assert len(subset) == 2 and subset.shape == (2, 2)
    assert subset[torch.tensor([1, 0])].tolist() == [[0, 1], [104, 105]]


DIFFUSION_PRESETS = {
    "refiner": {"model": {"image_size": 16, "block_out_channels": [8, 16], "layers_per_block": 1,
                          "norm_num_groups": 4},
                "train": {"batch_size": 4, "max_steps": 3, "warmup_steps": 1, "log_every": 1}},
    "diffusion": {"model": {"image_size": 16, "block_out_channels": [8, 16], "layers_per_block": 1,
                            "norm_num_groups": 4, "attention_head_dim": 8, "max_caption_tokens": 32, "text_dim": 16,
                            "text_layers": 1, "text_heads": 2},
                  "train": {"batch_size": 4, "max_steps": 3, "warmup_steps": 1, "log_every": 1}},
}


@pytest.mark.parametrize("kind", ["refiner", "diffusion"])
def test_refiner_and_baseline_train_from_shards_as_from_images(kind, capsys, folder, pipe, tmp_path):
    """--codes with the images kept: the same batches of the same pixels (and, for the refiner, the VQ
    reconstructions decoded from the codes) as --data, so the same losses; without the images, a clear error."""
    pipe.vq.save_pretrained(tmp_path / "vq")
    pipe.caption_tokenizer.save_pretrained(tmp_path / "tok")
    (tmp_path / "p.json").write_text(json.dumps(DIFFUSION_PRESETS[kind]))
    code, _, stderr = run(capsys, "data", "encode", str(folder), "--vq", str(tmp_path / "vq"), "--out",
                          str(tmp_path / "codes"), "--with-images", "--shard-size", "4")
    assert code == 0, stderr
    assert len(list((tmp_path / "codes").glob("images-*.npy"))) == 3
    needs = ["--vq", str(tmp_path / "vq")] if kind == "refiner" else ["--tokenizer", str(tmp_path / "tok")]
    base = ["train", kind, "--preset", str(tmp_path / "p.json"), *needs]
    code, _, stderr = run(capsys, *base, "--codes", str(tmp_path / "codes"), "--out", str(tmp_path / "from-codes"))
    assert code == 0, stderr
    code, _, stderr = run(capsys, *base, "--data", str(folder), "--out", str(tmp_path / "from-data"))
    assert code == 0, stderr
    from_codes, from_data = (losses(tmp_path / run / "metrics.jsonl") for run in ("from-codes", "from-data"))
    assert [s for s, _ in from_codes] == [s for s, _ in from_data] == [1, 2, 3]
    assert [x for _, x in from_codes] == pytest.approx([x for _, x in from_data], rel=1e-5)
    assert (tmp_path / "from-codes" / "model" / "model.safetensors").is_file()

    code, _, stderr = run(capsys, "data", "encode", str(folder), "--vq", str(tmp_path / "vq"), "--out",
                          str(tmp_path / "bare"))
    code, _, stderr = run(capsys, *base, "--codes", str(tmp_path / "bare"), "--out", str(tmp_path / "x"))
    assert code == 2 and "holds codes but not the images" in stderr and "--with-images" in stderr
    assert not (tmp_path / "x").exists()
    code, _, stderr = run(capsys, *base, "--out", str(tmp_path / "y"))
    assert code == 2 and "give --data (images and captions) or --codes" in stderr
