"""``t2i generate``, ``t2i release`` and ``t2i train ar`` through the entry point, on a tiny untrained pipeline."""

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ar_model.config import ARConfig
from ar_model.model import ARDecoder
from ar_model.pipeline import TextToImage
from ar_model.text_tokenizer import CaptionTokenizer
from vq.config import VQConfig
from vq.model import VQModel

from .conftest import needs_tesseract
from .test_cli import run

CAPTIONS = ["a red circle", "the word CAT in blue at the bottom", "three green triangles", "a blue square"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli-ar")
    torch.manual_seed(0)
    tokenizer = CaptionTokenizer.train(CAPTIONS * 20, vocab_size=320, max_tokens=24)
    vq = VQModel(VQConfig(image_size=16, base_channels=8, channel_mult=(1, 2, 2), latent_dim=8, codebook_size=32,
                          codebook_dim=4, kmeans_init=False))
    decoder = ARDecoder(ARConfig(text_vocab_size=tokenizer.vocab_size, codebook_size=32, grid_size=4,
                                 max_caption_tokens=24, dim=32, n_layers=2, n_heads=4, n_kv_heads=2))
    ar = TextToImage(vq, tokenizer, decoder)
    ar.save_pretrained(folder / "pipe")
    from hybrid.baseline import DiffusionBaseline
    from hybrid.config import BaselineConfig, RefinerConfig
    from hybrid.pipeline import DiffusionBaselinePipeline, HybridPipeline
    from hybrid.refiner import Refiner

    unet = dict(image_size=16, block_out_channels=(8, 16), norm_num_groups=4)
    HybridPipeline(ar, Refiner(RefinerConfig(**unet))).save_pretrained(folder / "full")
    DiffusionBaselinePipeline(tokenizer, DiffusionBaseline(BaselineConfig(
        **unet, attention_head_dim=8, text_vocab_size=tokenizer.vocab_size, max_caption_tokens=24, text_dim=16,
        text_layers=1, text_heads=2))).save_pretrained(folder / "full")
    # A baseline run folder whose baseline was trained with another caption tokenizer (same pieces or not).
    shutil.copytree(folder / "full" / "baseline", folder / "other-run" / "model")
    CaptionTokenizer.train(CAPTIONS[:3] * 20, vocab_size=320, max_tokens=24).save_pretrained(
        folder / "other-run" / "caption_tokenizer")
    shutil.copytree(folder / "pipe", folder / "broken")
    Image.new("RGB", (16, 16), (255, 0, 0)).save(folder / "img16.png")
    Image.new("RGB", (32, 32), (255, 0, 0)).save(folder / "img32.png")
    (folder / "notimage.png").write_text("not a png")
    shutil.rmtree(folder / "broken" / "decoder")
    return folder


def test_generate_one_prompt_grid_and_seeds(capsys, checkpoint, tmp_path):
    ckpt = str(checkpoint / "pipe")
    code, stdout, _ = run(capsys, "generate", "a red circle", "--out", str(tmp_path / "g.png"), "--checkpoint", ckpt,
                          "--num-images", "4", "--sampler", "sample", "--seed", "5", "--quiet")
    assert code == 0 and json.loads(stdout)["seeds"] == [5, 6, 7, 8]
    assert Image.open(tmp_path / "g.png").size == (16 * 2 + 2, 16 * 2 + 2)  # 2x2 grid, 2 px apart
    # Image i of a run uses seed + i: the second image of the grid is the first of a run at seed 6.
    run(capsys, "generate", "a red circle", "--out", str(tmp_path / "one.png"), "--checkpoint", ckpt,
        "--sampler", "sample", "--seed", "6", "--quiet")
    grid, one = Image.open(tmp_path / "g.png"), Image.open(tmp_path / "one.png")
    assert grid.crop((18, 0, 34, 16)).tobytes() == one.tobytes()


def test_generate_from_a_prompt_file(capsys, checkpoint, tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\nthe word CAT\n\na blue square\n")
    code, stdout, _ = run(capsys, "generate", "--prompts", str(tmp_path / "p.txt"), "--out-dir",
                          str(tmp_path / "imgs"), "--checkpoint", str(checkpoint / "pipe"), "--num-images", "2",
                          "--batch-size", "2", "--quiet")
    assert code == 0 and json.loads(stdout)["num_images"] == 6
    names = sorted(p.name for p in (tmp_path / "imgs").iterdir())
    # prompt index, image index, seed: prompt p's image i has seed --seed + p * --num-images + i
    assert names == ["00000_00_seed0.png", "00000_01_seed1.png", "00001_00_seed2.png", "00001_01_seed3.png",
                     "00002_00_seed4.png", "00002_01_seed5.png"]


def test_generate_one_prompt_to_a_grid_and_a_file_per_image(capsys, checkpoint, tmp_path):
    ckpt = str(checkpoint / "pipe")
    code, stdout, _ = run(capsys, "generate", "a red circle", "--out", str(tmp_path / "g.webp"), "--out-dir",
                          str(tmp_path / "each"), "--format", "jpg", "--checkpoint", ckpt, "--num-images", "2",
                          "--seed", "7", "--quiet")
    report = json.loads(stdout)
    assert code == 0 and report["seeds"] == [7, 8]
    assert [Path(f).name for f in report["files"]] == ["00000_00_seed7.jpg", "00000_01_seed8.jpg"]
    assert Image.open(tmp_path / "g.webp").format == "WEBP" and Image.open(report["files"][0]).format == "JPEG"
    # The second file is the image a run at seed 8 makes alone (lossless, to compare pixels).
    run(capsys, "generate", "a red circle", "--out", str(tmp_path / "eight.png"), "--checkpoint", ckpt,
        "--seed", "8", "--quiet")
    run(capsys, "generate", "a red circle", "--out-dir", str(tmp_path / "png"), "--checkpoint", ckpt,
        "--num-images", "2", "--seed", "7", "--quiet")
    assert Image.open(tmp_path / "png" / "00000_01_seed8.png").tobytes() == Image.open(tmp_path / "eight.png").tobytes()


@pytest.mark.parametrize("argv, message", [
    (["--out", "x.gif"], "--out: expected a file name ending in .png or .jpg or .jpeg or .webp, got 'x.gif'"),
    (["--device", "cuda:7"], "--device: device 'cuda:7' is not available"),
    (["--device", "toaster"], "--device: device 'toaster' is not a torch device"),
    (["--dtype", "int8"], "--dtype: invalid choice: 'int8'"),
])
def test_generate_bad_output_and_device_arguments(capsys, checkpoint, tmp_path, argv, message):
    argv = [a.replace("x.gif", str(tmp_path / "x.gif")) for a in argv]
    code, _, stderr = run(capsys, "generate", "a red circle", "--checkpoint", str(checkpoint / "pipe"),
                          *(["--out", str(tmp_path / "o.png")] if "--out" not in argv else []), *argv)
    assert code == 2 and message.replace("x.gif", str(tmp_path / "x.gif")) in stderr, stderr
    assert not list(tmp_path.glob("o.*"))


def test_every_command_that_runs_a_model_takes_device_and_dtype():
    from tools.cli import build_parser

    parser = build_parser()
    commands = [["generate"], ["edit", "complete"], ["edit", "regenerate"], ["compare"], ["eval", "ar"],
                ["eval", "loss"], ["eval", "vq"], ["eval", "digits"], ["eval", "refiner"], ["bench", "decode"]]
    for command in commands:
        sub = parser
        for name in command:
            sub = next(a for a in sub._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
        options = {o for a in sub._actions for o in a.option_strings}
        assert {"--device", "--dtype"} <= options, command


@pytest.mark.parametrize("mode, extra", [("hybrid", ["--refine-steps", "2"]), ("diffusion", ["--steps", "3"])])
def test_generate_modes(capsys, checkpoint, tmp_path, mode, extra):
    argv = ["generate", "a red circle", "--checkpoint", str(checkpoint / "full"), "--mode", mode, "--quiet",
            "--num-images", "2", "--seed", "3", *extra]
    code, stdout, _ = run(capsys, *argv, "--out", str(tmp_path / "a.png"))
    assert code == 0, stdout
    run(capsys, *argv, "--out", str(tmp_path / "b.png"))
    assert Image.open(tmp_path / "a.png").tobytes() == Image.open(tmp_path / "b.png").tobytes()  # same seed


def test_generate_hybrid_with_zero_refine_steps_writes_the_ar_image(capsys, checkpoint, tmp_path):
    argv = ["generate", "a red circle", "--checkpoint", str(checkpoint / "full"), "--quiet", "--num-images", "2",
            "--sampler", "sample", "--seed", "3"]
    assert run(capsys, *argv, "--mode", "ar", "--out", str(tmp_path / "ar.png"))[0] == 0
    assert run(capsys, *argv, "--mode", "hybrid", "--refine-steps", "0", "--out", str(tmp_path / "h0.png"))[0] == 0
    assert run(capsys, *argv, "--mode", "hybrid", "--out", str(tmp_path / "h.png"))[0] == 0
    ar, h0, h = (Image.open(tmp_path / f).tobytes() for f in ("ar.png", "h0.png", "h.png"))
    assert h0 == ar and h != ar


def test_release_writes_fp16(capsys, checkpoint, tmp_path):
    categories = ["single_object", "position", "two_objects", "relation", "counting", "colour_attribution", "text",
                  "text_layout"]
    score = {"num_prompts": 8, "num_images": 8, "overall": 0.125, "text": {"word_accuracy": 0.5, "cer": 0.25},
             "categories": {c: {"pass_rate": float(i == 0)} for i, c in enumerate(categories)}}
    (tmp_path / "score.json").write_text(json.dumps(score))
    code, stdout, _ = run(capsys, "release", "--checkpoint", str(checkpoint / "pipe"), "--out", str(tmp_path / "r"),
                          "--refiner", str(checkpoint / "full" / "refiner"), "--diffusion",
                          str(checkpoint / "full" / "baseline"), "--default-cfg-scale", "2.5",
                          "--scores", f"defaults, 8 prompts={tmp_path / 'score.json'}")
    assert code == 0
    card = (tmp_path / "r" / "README.md").read_text()  # the model card, from the records only
    assert "| defaults | 1.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.00 | 0.125 | 0.50 | 0.25 |" in card
    assert "guidance_scale 2.5" in card and "## Limits" in card and "16 px" in card
    code, _, stderr = run(capsys, "release", "--checkpoint", str(checkpoint / "pipe"), "--out", str(tmp_path / "x"),
                          "--scores", str(tmp_path / "score.json"))
    assert code == 2 and "--scores: give LABEL=REPORT.json" in stderr and not (tmp_path / "x").exists()
    assert TextToImage.from_pretrained(tmp_path / "r").default_guidance_scale == 2.5
    report = json.loads(stdout)
    assert report["dtype"] == "float16" and "decoder/model.safetensors" in report["files"]
    original = (checkpoint / "pipe" / "decoder" / "model.safetensors").stat().st_size
    assert report["files"]["decoder/model.safetensors"] < 0.6 * original
    assert TextToImage.from_pretrained(tmp_path / "r").decoder.lm_head.weight.dtype == torch.float32
    assert "refiner/model.safetensors" in report["files"] and "baseline/model.safetensors" in report["files"]
    assert set(json.loads((tmp_path / "r" / "training.json").read_text())) == {"ar", "refiner", "baseline"}
    # pipeline.json lists every component the folder holds, each written by its pipeline's save_pretrained.
    listed = json.loads((tmp_path / "r" / "pipeline.json").read_text())["components"]
    assert listed == ["vq", "caption_tokenizer", "decoder", "refiner", "baseline"]
    assert set(listed) == {p.name for p in (tmp_path / "r").iterdir() if p.is_dir()}
    # Releasing a release again keeps its training record (the release folder's parent has none).
    (tmp_path / "r" / "training.json").write_text(json.dumps({"ar": {"train_seconds": 7}}))
    code, _, _ = run(capsys, "release", "--checkpoint", str(tmp_path / "r"), "--out", str(tmp_path / "again"))
    assert code == 0 and json.loads((tmp_path / "again" / "training.json").read_text()) == {
        "ar": {"train_seconds": 7}}
    assert json.loads((tmp_path / "again" / "pipeline.json").read_text())["components"] == [
        "vq", "caption_tokenizer", "decoder"]


def test_edit_and_export_commands(capsys, checkpoint, tmp_path):
    ckpt = str(checkpoint / "pipe")
    code, stdout, _ = run(capsys, "edit", "regenerate", str(checkpoint / "img16.png"), "--prompt", "a red circle",
                          "--box", "0", "0", "8", "8", "--out", str(tmp_path / "e.png"), "--checkpoint", ckpt,
                          "--sampler", "sample", "--quiet")
    assert code == 0 and Image.open(tmp_path / "e.png").size == (16, 16)
    code, stdout, _ = run(capsys, "edit", "complete", str(checkpoint / "img16.png"), "--prompt", "a red circle",
                          "--keep-rows", "2", "--out", str(tmp_path / "c.png"), "--checkpoint", ckpt, "--quiet")
    assert code == 0 and json.loads(stdout)["edit"] == "complete"
    code, stdout, _ = run(capsys, "export", "transformers", "--checkpoint", ckpt, "--out", str(tmp_path / "hf"))
    assert code == 0 and "model.safetensors" in json.loads(stdout)["files"]
    code, _, _ = run(capsys, "generate", "a red circle", "--out", str(tmp_path / "b.png"), "--checkpoint", ckpt,
                     "--sampler", "beam", "--beam-width", "3", "--cfg-scale", "2", "--cfg-interval", "5",
                     "--negative-prompt", "a blue square", "--quiet")
    assert code == 0
    # The file is the image the API makes with the same settings, and every one of them reached it.
    api = TextToImage.from_pretrained(ckpt)
    api.set_progress_bar_config(disable=True)
    settings = dict(sampler="beam", beam_width=3, guidance_scale=2.0, guidance_interval=5)
    out = api("a red circle", negative_prompt="a blue square", **settings)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png").convert("RGB")), np.asarray(out.images[0]))
    assert not torch.equal(out.ids, api("a red circle", **settings).ids)  # the negative prompt changed the tokens
    everywhere = api("a red circle", **{**settings, "guidance_interval": None}, negative_prompt="a blue square")
    assert not torch.allclose(out.log_probs, everywhere.log_probs)  # and the interval changed the beam's scores


BAD = [
    (["generate", "", "--out", "{tmp}/x.png"], "prompt is empty"),
    (["generate", "a red circle " * 10, "--out", "{tmp}/x.png"], "tokens long"),
    (["generate", "a r\u00e9d circle", "--out", "{tmp}/x.png"], "character '\u00e9' at position 3 is not allowed"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--cfg-scale", "0.5"], "number >= 1, got '0.5'"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--top-p", "0"], "number in (0, 1], got '0'"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--top-p", "1.5"], "number in (0, 1], got '1.5'"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--top-k", "-1"], "integer >= 0, got -1"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--temperature", "-1"], "number >= 0, got '-1'"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--num-images", "0"], "integer >= 1, got 0"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--sampler", "nucleus"], "invalid choice: 'nucleus'"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--sampler", "beam", "--beam-width", "0"],
     "integer >= 1, got 0"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--cfg-interval", "-2"], "integer >= 0, got -2"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--cfg-schedule", "cosine"], "invalid choice: 'cosine'"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--cfg-scale", "3", "--negative-prompt", "\u00e9"],
     "negative_prompt: prompt"),
    (["edit", "complete", "{ckpt}/img16.png", "--prompt", "a red circle", "--keep-rows", "9", "--out",
      "{tmp}/x.png", "--checkpoint", "{ckpt}/pipe"], "--keep-rows: keep_rows must be an integer in [0, 4]"),
    (["edit", "complete", "{ckpt}/img32.png", "--prompt", "a red circle", "--keep-rows", "1", "--out",
      "{tmp}/x.png", "--checkpoint", "{ckpt}/pipe"], "IMAGE: image must be 16x16 pixels"),
    (["edit", "complete", "{ckpt}/notimage.png", "--prompt", "a red circle", "--keep-rows", "1", "--out",
      "{tmp}/x.png", "--checkpoint", "{ckpt}/pipe"], "cannot read"),
    (["edit", "regenerate", "{ckpt}/img16.png", "--prompt", "a red circle", "--box", "0", "0", "20", "4", "--out",
      "{tmp}/x.png", "--checkpoint", "{ckpt}/pipe"], "--box: box must be"),
    (["edit", "regenerate", "{ckpt}/img16.png", "--prompt", "a red circle", "--box", "0", "0", "4", "--out",
      "{tmp}/x.png", "--checkpoint", "{ckpt}/pipe"], "expected 4 arguments"),
    (["edit", "complete", "{ckpt}/img16.png", "--prompt", "a red circle", "--keep-rows", "1", "--sampler", "beam",
      "--out", "{tmp}/x.png", "--checkpoint", "{ckpt}/pipe"], "does not edit"),
    (["export", "transformers", "--checkpoint", "{ckpt}/broken", "--out", "{tmp}/hf"], "missing ['decoder']"),
    (["bench", "decode", "--checkpoint", "{ckpt}/pipe", "--rounds", "0"], "integer >= 1, got 0"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--mode", "hybrid", "--checkpoint", "{ckpt}/pipe"],
     "has no refiner/ folder"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--mode", "diffusion", "--checkpoint", "{ckpt}/pipe"],
     "has no baseline/ folder"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--mode", "diffusion", "--sampler", "sample",
      "--checkpoint", "{ckpt}/full"], "--mode diffusion samples with DPM-Solver++"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--mode", "hybrid", "--refine-strength", "2",
      "--checkpoint", "{ckpt}/full"], "number in [0, 1], got '2'"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--mode", "gan"], "invalid choice: 'gan'"),
    (["compare", "--prompts", "{tmp}/bad.txt", "--out", "{tmp}/c", "--checkpoint", "{ckpt}/full"], "prompt 2 of"),
    (["compare", "--prompts", "{tmp}/good.txt", "--modes", "ar-greedy,gan", "--out", "{tmp}/c", "--checkpoint",
      "{ckpt}/full"], "--modes: ['gan'] not understood"),
    (["train", "refiner", "--data", "{tmp}", "--vq", "{tmp}/nowhere", "--out", "{tmp}/o"], "does not exist"),
    (["train", "refiner", "--preset", "{tmp}/no.json", "--data", "{tmp}", "--vq", "{tmp}", "--out", "{tmp}/o"],
     "--preset: file '{tmp}/no.json' does not exist"),
    (["train", "diffusion", "--preset", "huge", "--data", "{tmp}", "--tokenizer", "{tmp}", "--out", "{tmp}/o"],
     "diffusion preset must be one of"),
    (["bench", "decode", "--checkpoint", "{ckpt}/pipe", "--dtype", "int8"], "invalid choice: 'int8'"),
    (["generate", "a red circle", "--out", "{tmp}/missing/x.png"], "folder '{tmp}/missing' of"),
    (["generate", "a red circle", "--out", "{tmp}/x.gif"], "ending in .png or .jpg"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--checkpoint", "org/model"],
     "--checkpoint: checkpoint 'org/model' is not a local folder; loading from the Hugging Face Hub is not supported"),
    (["generate", "a red circle"], "--out FILE.png (one image or a grid) or --out-dir DIR"),
    (["generate", "--out", "{tmp}/x.png"], "give either PROMPT or --prompts"),
    (["generate", "--prompts", "{tmp}/bad.txt", "--out-dir", "{tmp}/imgs"], "prompt 2 of"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--checkpoint", "{ckpt}/broken"], "missing ['decoder']"),
    (["generate", "a red circle", "--out", "{tmp}/x.png", "--checkpoint", "{tmp}/nowhere"], "does not exist"),
    (["release", "--checkpoint", "{ckpt}/broken", "--out", "{tmp}/r"], "missing ['decoder']"),
    (["release", "--checkpoint", "{ckpt}/pipe", "--out", "{tmp}/r", "--default-cfg-scale", "0.5"],
     "--default-cfg-scale"),
    (["release", "--checkpoint", "{ckpt}/pipe", "--diffusion", "{ckpt}/other-run/model", "--out", "{tmp}/r"],
     "--diffusion: the baseline was trained with the caption tokenizer"),
    (["train", "ar", "--preset", "huge", "--vq", "{ckpt}/pipe/vq", "--data", "{tmp}", "--out", "{tmp}/o"],
     "AR preset must be one of"),
    (["train", "ar", "--vq", "{tmp}", "--data", "{tmp}", "--out", "{tmp}/o"], "has no config.json"),
    (["train", "ar", "--vq", "{ckpt}/pipe/vq", "--data", "{tmp}", "--out", "{tmp}/o"], "holds no images"),
    (["train", "ar", "--data", "{tmp}", "--out", "{tmp}/o"], "give --vq (the VQ tokenizer"),
    (["train", "ar", "--init-from", "{tmp}", "--data", "{tmp}", "--out", "{tmp}/o"],
     "--init-from: '{tmp}' is neither a model folder (config.json + model.safetensors) nor a pipeline folder with a "
     "decoder/ model"),
    (["train", "ar", "--init-from", "{ckpt}/pipe", "--data", "{tmp}", "--out", "{tmp}/o"],
     "--init-from: found no training.json with train_seconds for"),
    (["train", "ar", "--caption-tokenizer", "{ckpt}/pipe/caption_tokenizer", "--init-from", "{ckpt}/pipe", "--data",
      "{tmp}", "--out", "{tmp}/o"], "--caption-tokenizer: a warm start (--init-from) keeps its own"),
    (["train", "ar", "--caption-tokenizer", "{tmp}", "--vq", "{ckpt}/pipe/vq", "--data", "{tmp}", "--out", "{tmp}/o"],
     "--caption-tokenizer: caption tokenizer"),
    (["train", "diffusion", "--init-from", "{ckpt}/pipe", "--tokenizer", "{ckpt}/pipe/caption_tokenizer", "--data",
      "{tmp}", "--out", "{tmp}/o"], "nor a pipeline folder with a baseline/ model"),
]


@pytest.mark.parametrize("argv, named", BAD)
def test_bad_arguments_give_one_line_exit_2_and_no_file(capsys, checkpoint, tmp_path, argv, named):
    (tmp_path / "bad.txt").write_text("a red circle\na red \u2603\n")
    (tmp_path / "good.txt").write_text("a red circle\n")
    argv = [a.format(tmp=tmp_path, ckpt=checkpoint) for a in argv]
    if "--checkpoint" not in argv and argv[0] == "generate":
        argv += ["--checkpoint", str(checkpoint / "pipe")]
    before = set(tmp_path.rglob("*"))
    code, _, stderr = run(capsys, *argv)
    assert code == 2
    assert named.format(tmp=tmp_path) in stderr, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and stderr.startswith("t2i")
    assert set(tmp_path.rglob("*")) == before


@pytest.fixture(scope="module")
def long_caption_checkpoint(pipe, tmp_path_factory):  # conftest's pipe: 32 caption tokens fit every prompt
    folder = tmp_path_factory.mktemp("eval-ar") / "pipe"
    pipe.save_pretrained(folder)
    return folder


def test_eval_ar_reports_position_sensitivity(capsys, long_caption_checkpoint, tmp_path):
    code, stdout, _ = run(capsys, "eval", "ar", "--checkpoint", str(long_caption_checkpoint), "--num-scenes", "4",
                          "--prompts-per-category", "0", "--out", str(tmp_path / "e.json"), "--quiet")
    assert code == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report == json.loads(stdout)
    ps = report["position_sensitivity"]
    assert ps["num_scenes"] == 4 and ps["chance_top1"] == round(1 / 9, 4) and 0 <= ps["true_position_top1"] <= 1
    assert ps["gap_ci95"][0] <= ps["mean_gap_nats"] <= ps["gap_ci95"][1] and "judge" not in report
    assert "word_sensitivity" not in report  # asked for only


def test_eval_ar_word_sensitivity_swaps_only_the_word(capsys, long_caption_checkpoint):
    from tools.ar_eval import word_variants

    scene, captions, truth = word_variants(0, 5, "train", 4)
    (text,) = scene.requirements.clauses
    assert len(captions) == len(set(captions)) == 9 and text.word in captions[truth].split()
    words = [c.split()[2] for c in captions]  # "the word W ..."
    assert {len(w) for w in words} == {len(text.word)}
    assert {c.replace(w, "?") for c, w in zip(captions, words)} == {captions[truth].replace(text.word, "?")}
    code, stdout, _ = run(capsys, "eval", "ar", "--checkpoint", str(long_caption_checkpoint), "--num-scenes", "1",
                          "--word-scenes", "3", "--prompts-per-category", "0", "--quiet")
    ws = json.loads(stdout)["word_sensitivity"]
    assert code == 0 and set(ws) == {"train", "heldout"} and ws["heldout"]["words"] == "heldout"
    assert ws["train"]["num_scenes"] == 3 and 0 <= ws["train"]["true_word_top1"] <= 1


def test_eval_ar_colour_binding_swaps_only_the_colours(capsys, long_caption_checkpoint):
    from tools.ar_eval import colour_variants
    from tools.world import format_caption, parse_caption

    for index in range(6):
        scene, captions, truth = colour_variants(0, index)
        assert len(captions) == len(set(captions)) == 2 and truth == index % 2
        a, b = (parse_caption(c).clauses for c in (captions[truth], captions[1 - truth]))
        assert captions[truth] == format_caption(scene.requirements)
        assert [o.shape for o in a] == [o.shape for o in b] and [o.colour for o in a] == [o.colour for o in b][::-1]
    code, stdout, _ = run(capsys, "eval", "ar", "--checkpoint", str(long_caption_checkpoint), "--num-scenes", "1",
                          "--colour-scenes", "4", "--prompts-per-category", "0", "--quiet")
    cb = json.loads(stdout)["colour_binding_sensitivity"]
    assert code == 0 and cb["num_scenes"] == 4 and cb["chance_top1"] == 0.5 and 0 <= cb["true_binding_top1"] <= 1
    assert cb["gap_ci95"][0] <= cb["mean_gap_nats"] <= cb["gap_ci95"][1]


@needs_tesseract  # the judge reads the text categories' words
def test_eval_ar_judges_every_category(capsys, long_caption_checkpoint):
    code, stdout, _ = run(capsys, "eval", "ar", "--checkpoint", str(long_caption_checkpoint), "--num-scenes", "1",
                          "--prompts-per-category", "1", "--sampler", "sample", "--top-k", "5", "--quiet")
    assert code == 0
    report = json.loads(stdout)
    assert report["judge"]["num_images"] == 8 and len(report["judge"]["categories"]) == 8
    assert report["sampling"]["sampler"] == "sample" and report["sampling"]["top_k"] == 5


def test_position_variants_change_only_the_position():
    from tools.ar_eval import position_variants
    from tools.world import caption as scene_caption

    for i in range(5):
        scene, captions, truth = position_variants(0, i)
        assert captions[truth] == scene_caption(scene) and len(set(captions)) == 9
        words = [c.split() for c in captions]
        # Same words up to the position phrase at the end.
        assert all(w[:5] == words[truth][:5] or w[:4] == words[truth][:4] for w in words)


def test_bench_train_compares_presets(capsys, tmp_path):
    small = {"model": {"max_caption_tokens": 8, "dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
             "train": {"batch_size": 4, "text_vocab_size": 64}}
    (tmp_path / "a.json").write_text(json.dumps(small))
    small["model"]["image_layout"] = "row_start"
    (tmp_path / "b.json").write_text(json.dumps(small))
    code, stdout, _ = run(capsys, "bench", "train", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                          "--steps", "1", "--rounds", "1", "--grid-size", "4", "--codebook-size", "16")
    assert code == 0
    report = json.loads(stdout)
    a, b = report["results"]["a"], report["results"]["b"]
    assert (a["sequence_tokens"], b["sequence_tokens"]) == (8 + 1 + 16 + 1, 8 + 1 + 20 + 1)
    assert report["step_time_ratio_vs_first"]["a"] == 1.0 and b["s_per_step"] > 0


def test_bench_train_prices_the_diffusion_baseline_beside_the_decoder(capsys, tmp_path):
    ar = {"model": {"max_caption_tokens": 8, "dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
          "train": {"batch_size": 4, "text_vocab_size": 64}}
    unet = {"model": {"image_size": 16, "block_out_channels": [8, 16], "norm_num_groups": 4,
                      "cross_attention_levels": 1, "max_caption_tokens": 8, "text_dim": 16, "text_layers": 1,
                      "text_heads": 2},
            "train": {"batch_size": 2}}
    (tmp_path / "ar.json").write_text(json.dumps(ar))
    (tmp_path / "unet.json").write_text(json.dumps(unet))
    code, stdout, _ = run(capsys, "bench", "train", str(tmp_path / "ar.json"), "--diffusion",
                          str(tmp_path / "unet.json"), "--text-vocab-size", "64", "--steps", "1", "--rounds", "1",
                          "--grid-size", "4", "--codebook-size", "16")
    assert code == 0
    results = json.loads(stdout)["results"]
    assert list(results) == ["ar", "diffusion:unet"]
    baseline = results["diffusion:unet"]
    assert baseline["kind"] == "diffusion" and baseline["image_size"] == 16 and baseline["s_per_step"] > 0
    per_step = baseline["s_per_step"]  # rounded to ms: the images per hour came from the unrounded figure
    assert 2 * 3600 / (per_step + 5e-4) - 1 <= baseline["images_per_hour"] <= 2 * 3600 / max(per_step - 5e-4, 1e-9) + 1
    code, _, stderr = run(capsys, "bench", "train")
    assert code == 2 and "at least one AR preset or --diffusion" in stderr
    code, _, stderr = run(capsys, "bench", "train", "--diffusion", "huge")
    assert code == 2 and "diffusion preset must be one of" in stderr


@needs_tesseract  # it scores 'the word CAT'
def test_compare_writes_report_grid_and_table(capsys, checkpoint, tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\nthe word CAT\n")
    code, stdout, _ = run(capsys, "compare", "--prompts", str(tmp_path / "p.txt"), "--checkpoint",
                          str(checkpoint / "full"), "--seeds", "2", "--out", str(tmp_path / "cmp"), "--steps", "2",
                          "--refine-steps", "1", "--speed-rounds", "1", "--beam-width", "2")
    assert code == 0
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert list(report["modes"]) == ["ar-default", "ar-greedy", "ar-sample", "ar-beam", "hybrid", "diffusion"]
    for mode in report["modes"].values():
        assert mode["num_images"] == 4 and mode["flops_per_image"] > 0 and mode["images_per_s_batch8"] > 0
        assert set(mode["categories"]) == {"single_object", "text"}
    grid = Image.open(tmp_path / "cmp" / "grid.png")
    assert grid.height > 2 * 128 and "ar-beam" in stdout and "GFLOP/img" in stdout
    assert set(report["training_flops_per_step"]) == {"ar", "refiner", "baseline"}
    assert all(v > 0 for v in report["training_flops_per_step"].values())
    for name, mode in report["modes"].items():
        pooled, categories = mode["pooled"], mode["categories"].values()
        assert pooled["n"] == 4 == sum(c["n"] for c in categories) and pooled["n_prompts"] == 2
        assert pooled["passed"] == sum(c["passed"] for c in categories)
        # The prompt is the unit of the interval (seeds of one prompt are not independent): as wide as n = 2.
        from tools.judge.report import wilson_interval
        assert pooled["ci95"] == [round(x, 4) for x in wilson_interval(pooled["pass_rate"] * 2, 2)]
    assert report["clean_render_gradient_energy"] > 0 and "grad E" in stdout
    assert report["modes"]["hybrid"]["gradient_energy"] != report["modes"]["ar-greedy"]["gradient_energy"]


def test_compare_free_form_prompts_are_generated_and_timed_not_judged(capsys, checkpoint, tmp_path):
    (tmp_path / "p.txt").write_text("a red circle\na watercolour fox at dawn\n")
    argv = ["compare", "--prompts", str(tmp_path / "p.txt"), "--checkpoint", str(checkpoint / "full"),
            "--modes", "ar-greedy,diffusion", "--out", str(tmp_path / "cmp"), "--steps", "2", "--speed-rounds", "1"]
    code, _, stderr = run(capsys, *argv)
    assert code == 2 and "prompt 2 of" in stderr and "--free-form" in stderr
    assert not (tmp_path / "cmp").exists()
    code, stdout, _ = run(capsys, *argv, "--free-form")
    assert code == 0
    report = json.loads((tmp_path / "cmp" / "report.json").read_text())
    assert report["num_prompts"] == 2 and report["num_judged_prompts"] == 1
    for mode in report["modes"].values():  # judged: the one prompt that parses; timed: both
        assert mode["num_images"] == 1 and set(mode["categories"]) == {"single_object"}
        assert mode["latency_s_batch1"] > 0 and mode["images_per_s_batch8"] > 0
    assert Image.open(tmp_path / "cmp" / "grid.png").height > 2 * 128  # both prompts have a row
    assert "1 of 2 prompts are outside" in stdout

    (tmp_path / "free.txt").write_text("a watercolour fox at dawn\n")
    code, stdout, _ = run(capsys, "compare", "--prompts", str(tmp_path / "free.txt"), "--checkpoint",
                          str(checkpoint / "full"), "--modes", "ar-greedy", "--out", str(tmp_path / "cmp2"),
                          "--speed-rounds", "1", "--free-form")
    assert code == 0
    mode = json.loads((tmp_path / "cmp2" / "report.json").read_text())["modes"]["ar-greedy"]
    assert mode["overall"] is None and mode["num_images"] == 0 and mode["images_per_s_batch8"] > 0


def test_eval_refiner_reports_every_setting(capsys, checkpoint, tmp_path):
    code, stdout, _ = run(capsys, "eval", "refiner", "--checkpoint", str(checkpoint / "full"), "--num", "3",
                          "--steps", "1,2", "--strengths", "0.5", "--out", str(tmp_path / "r.json"),
                          "--grid", str(tmp_path / "r.png"))
    assert code == 0
    report = json.loads(stdout)
    assert report == json.loads((tmp_path / "r.json").read_text())
    assert [(r["steps"], r["strength"]) for r in report["settings"]] == [(1, 0.5), (2, 0.5)]
    assert report["clean"]["gradient_energy"] > 0
    assert all(r["psnr"] != report["vq"]["psnr"] for r in report["settings"])  # the refiner changed the images
    assert report["best_psnr"] == max(report["settings"], key=lambda r: r["psnr"])
    assert Image.open(tmp_path / "r.png").size == (3 * 36, 3 * 36)  # clean | VQ | refined, 3 rows, 16 px x 2


def test_hybrid_defaults_of_the_cli_are_the_pipeline_defaults():
    from hybrid.pipeline import DEFAULT_DIFFUSION_STEPS, DEFAULT_REFINE_STEPS
    from tools.cli import build_parser

    parser = build_parser()
    for argv in (["generate", "x", "--out", "x.png"], ["compare", "--prompts", __file__, "--out", "c"]):
        args = parser.parse_args(argv)
        assert (args.refine_steps, args.refine_strength, args.steps) == (
            DEFAULT_REFINE_STEPS, None, DEFAULT_DIFFUSION_STEPS)  # None: the refiner's own default


def test_train_refiner_and_diffusion_commands_write_models(capsys, checkpoint, tmp_path):
    code, _, _ = run(capsys, "data", "make", "--num", "8", "--out", str(tmp_path / "d"))
    assert code == 0
    torch.manual_seed(0)
    VQModel(VQConfig(image_size=64, base_channels=8, channel_mult=(1, 2, 2), latent_dim=8, codebook_size=32,
                     codebook_dim=4, kmeans_init=False)).save_pretrained(tmp_path / "vq64")
    CaptionTokenizer.train(CAPTIONS * 20, vocab_size=320, max_tokens=64).save_pretrained(tmp_path / "tok")
    unet = {"image_size": 64, "block_out_channels": [8, 16], "norm_num_groups": 4}
    train = {"batch_size": 4, "max_steps": 2, "warmup_steps": 1, "num_train": 8}
    (tmp_path / "r.json").write_text(json.dumps({"model": unet, "train": {**train, "timestep_fraction": 0.5}}))
    (tmp_path / "d.json").write_text(json.dumps({"model": {**unet, "attention_head_dim": 8, "text_dim": 16,
                                                           "text_layers": 1, "text_heads": 2,
                                                           "max_caption_tokens": 64}, "train": train}))
    for kind, extra in (("refiner", ["--vq", str(tmp_path / "vq64")]),
                        ("diffusion", ["--tokenizer", str(tmp_path / "tok")])):
        out = tmp_path / kind
        code, stdout, stderr = run(capsys, "train", kind, "--preset", str(tmp_path / f"{kind[0]}.json"), "--data",
                                   str(tmp_path / "d"), "--out", str(out), *extra)
        assert code == 0, stderr
        assert json.loads(stdout)["model"] == str(out / "model")
        assert (out / "model" / "model.safetensors").is_file()
        assert json.loads((out / "training.json").read_text())["steps"] == 2
    assert (tmp_path / "refiner" / "conditions.safetensors").is_file()  # VQ reconstructions, made once
    assert json.loads((tmp_path / "refiner" / "model" / "config.json").read_text())["max_strength"] == 0.5
    code, _, stderr = run(capsys, "eval", "refiner", "--vq", str(tmp_path / "vq64"), "--refiner",
                          str(tmp_path / "refiner" / "model"), "--num", "2")  # default strengths reach 1.0
    assert code == 2 and "--strengths: this refiner was trained on noise up to strength 0.5, got 1.0" in stderr


@pytest.fixture(scope="module")
def own_data(tmp_path_factory):
    """A user's image folder: 16 px images with captions in metadata.jsonl."""
    folder = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(CAPTIONS + ["two orange diamonds", "the word DOG"]):
        Image.fromarray((rng.random((20, 24, 3)) * 255).astype(np.uint8)).save(folder / f"{i}.png")
        rows.append(json.dumps({"file_name": f"{i}.png", "text": text}))
    (folder / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    return folder


def test_eval_loss_is_the_decoders_cross_entropy_on_the_codes(capsys, long_caption_checkpoint, own_data, pipe):
    import math

    import torch.nn.functional as F

    from ar_model.layout import image_layout
    from ar_model.sequence import caption_prefixes, training_sequences
    from tools.sources import read_images

    code, stdout, _ = run(capsys, "eval", "loss", "--checkpoint", str(long_caption_checkpoint), "--data",
                          str(own_data))
    assert code == 0
    report = json.loads(stdout)
    assert report["num_images"] == 6 and report["image_codes"] == 16
    # The same figure from the decoder's full forward and cross_entropy over the codebook slice.
    images, captions, _ = read_images(str(own_data), 16, 10, progress=False)
    c = pipe.decoder.config
    codes = pipe.vq.encode(images.float() / 255).flatten(1)
    seq = training_sequences(c, caption_prefixes(c, [pipe.caption_tokenizer.encode(t) for t in captions]), codes)
    with torch.no_grad():
        logits = pipe.decoder(seq[:, :-1])
    window = torch.tensor(image_layout(c).code_positions) - 1
    ce = F.cross_entropy(logits[:, window, c.image_offset:c.image_offset + c.codebook_size].reshape(-1, c.codebook_size),
                         codes.reshape(-1))
    assert report["bits_per_image_code"] == pytest.approx(ce.item() / math.log(2), abs=1e-3)
    lo, hi = report["bits_per_image_code_ci95"]
    assert lo <= report["bits_per_image_code"] <= hi
    assert report["bits_per_image_code_null_caption"] != report["bits_per_image_code"]


def test_eval_vq_on_own_data(capsys, checkpoint, own_data, tmp_path):
    code, stdout, _ = run(capsys, "eval", "vq", "--checkpoint", str(checkpoint / "pipe" / "vq"), "--data",
                          str(own_data), "--grid", str(tmp_path / "g.png"))
    assert code == 0
    report = json.loads(stdout)
    assert report["num_images"] == 6 and "judge" not in report and 0 < report["codebook_usage"] <= 1
    assert np.isfinite(report["psnr"]) and -1 <= report["ssim"] <= 1
    assert Image.open(tmp_path / "g.png").size[0] > 0


def test_eval_grid_goes_beside_out_not_into_the_working_directory(capsys, checkpoint, own_data, tmp_path,
                                                                   monkeypatch):
    """Without --grid the grid is written beside --out: a default into the working directory was committed by
    mistake twice (vq_reconstructions.png, refiner_eval.png)."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, _, _ = run(capsys, "eval", "vq", "--checkpoint", str(checkpoint / "pipe" / "vq"), "--data",
                     str(own_data), "--out", str(tmp_path / "vq.json"))
    assert code == 0
    assert Image.open(tmp_path / "vq_grid.png").size[0] > 0
    assert json.loads((tmp_path / "vq.json").read_text())["comparison_grid"] == str(tmp_path / "vq_grid.png")
    assert list(work.iterdir()) == []


def test_a_caption_over_the_token_limit_is_skipped_and_listed(capsys, checkpoint, own_data, tmp_path):
    """One sample of a user's folder has a caption too long for the model: the decoder and the baseline train
    on the others and name it in OUT/data.json; under --strict it is a one-line error naming it."""
    data = tmp_path / "data"
    shutil.copytree(own_data, data)
    rows = (data / "metadata.jsonl").read_text().splitlines()
    rows[2] = json.dumps({"file_name": "2.png", "text": "a red circle and a blue square " * 12})
    (data / "metadata.jsonl").write_text("\n".join(rows) + "\n")
    ar = {"model": {"max_caption_tokens": 40, "dim": 32, "n_layers": 1, "n_heads": 4, "n_kv_heads": 2},
          "train": {"batch_size": 2, "max_steps": 2, "warmup_steps": 1, "text_vocab_size": 320}}
    unet = {"image_size": 16, "block_out_channels": [8, 16], "norm_num_groups": 4, "attention_head_dim": 8,
            "text_dim": 16, "text_layers": 1, "text_heads": 2, "max_caption_tokens": 24}
    (tmp_path / "a.json").write_text(json.dumps(ar))
    (tmp_path / "d.json").write_text(json.dumps({"model": unet, "train": {"batch_size": 2, "max_steps": 2,
                                                                          "warmup_steps": 1}}))
    commands = {"ar": ["--preset", str(tmp_path / "a.json"), "--vq", str(checkpoint / "pipe" / "vq")],
                "diffusion": ["--preset", str(tmp_path / "d.json"), "--tokenizer",
                              str(checkpoint / "pipe" / "caption_tokenizer")]}
    for kind, extra in commands.items():
        out = tmp_path / kind
        code, _, stderr = run(capsys, "train", kind, *extra, "--data", str(data), "--out", str(out))
        assert code == 0, stderr
        report = json.loads((out / "data.json").read_text())
        assert report["skipped"] == 1 and report["kept"] == 5
        (skipped,) = report["skipped_samples"]
        assert skipped["key"].endswith("2.png") and skipped["reason"].startswith("caption over the token limit")
        code, _, stderr = run(capsys, "train", kind, *extra, "--data", str(data), "--out", str(tmp_path / "s"),
                              "--strict")
        last = stderr.strip().split("\n")[-1]  # after the reader's progress bar
        assert code == 2 and last.startswith("t2i train: error: ") and "sample '" in last and "2.png" in last, stderr
        assert "caption over the token limit" in last and "Traceback" not in stderr
