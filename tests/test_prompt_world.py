"""Prompts a checkpoint knows: its training captions' words are recorded (world.json), prompts are normalised as
those captions were written, and a prompt with a word they never had is said (a warning per prompt, or with
strict an error), in the pipelines and in ``t2i generate``."""

import dataclasses
import json
import warnings

import pytest
import torch

from ar_model.pipeline import TextToImage
from ar_model.prompt_world import PromptWorld, UnknownPromptWarning
from hybrid.pipeline import DiffusionBaselinePipeline
from tools.train.captions import SCENE_GRAMMAR, caption_world

from .conftest import CAPTIONS
from .test_cli import run
from .test_hybrid import baseline

WORLD = PromptWorld.from_captions(CAPTIONS, text_marker="the word")


def test_the_world_of_captions():
    assert WORLD.lowercase and WORLD.text_marker == "the word"
    assert {"a", "red", "circle", "word", "three"} <= set(WORLD.words) and "CAT" not in WORLD.words
    assert WORLD.letters == "ACDGOT"  # of CAT and DOG, the marked text
    assert WORLD.normalize("THE WORD cat  in Blue") == "the word CAT  in blue"
    assert WORLD.problem("a red circle") is None and WORLD.problem("the word DOT") is None
    assert "never saw 'cat' (word 2)" in WORLD.problem("a cat") and "known words: 'a'," in WORLD.problem("a cat")
    assert "the text 'BEE' (word 3) has 'BE'" in WORLD.problem("the word bee")
    upper = PromptWorld.from_captions(["A Cat sat", "a dog"])
    assert not upper.lowercase and upper.normalize("a cat") == "a cat" and "'cat'" in upper.problem("a cat")


def test_caption_world_knows_the_scene_grammar():
    assert caption_world(["a red circle", "the word CAT at the top"]).grammar == SCENE_GRAMMAR
    assert caption_world(["a red circle", "a photo of a cat"]).grammar is None


@pytest.fixture
def known(pipe):
    return TextToImage(pipe.vq, pipe.caption_tokenizer, pipe.decoder, prompt_world=WORLD)


def test_pipeline_warns_once_per_unknown_prompt_and_strict_raises(known):
    known.set_progress_bar_config(disable=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        known(["a red cat", "a red circle", "a blue dragon", "a red cat"])
    messages = [str(w.message) for w in caught if w.category is UnknownPromptWarning]
    assert len(messages) == 2 and "'cat'" in messages[0] and "'dragon'" in messages[1]
    with pytest.raises(ValueError, match="never saw 'cat' .* \\(strict=True\\)"):
        known("a red cat", strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a known prompt warns nothing
        known("a red circle")


def test_prompts_are_normalised_as_the_training_captions(known):
    known.set_progress_bar_config(disable=True)
    gen = (lambda: torch.Generator().manual_seed(0))
    a = known("THE WORD cat", sampler="sample", generator=gen())
    b = known("the word CAT", sampler="sample", generator=gen())
    assert a.prompts == ["the word CAT"] and torch.equal(a.ids, b.ids)


def test_the_world_is_saved_and_loaded_with_each_pipeline(known, tmp_path):
    known.save_pretrained(tmp_path / "p")
    assert json.loads((tmp_path / "p" / "world.json").read_text())["words"] == list(WORLD.words)
    assert TextToImage.from_pretrained(tmp_path / "p").prompt_world == WORLD
    d = DiffusionBaselinePipeline(known.caption_tokenizer, baseline(known.caption_tokenizer.vocab_size),
                                  prompt_world=WORLD)
    d.save_pretrained(tmp_path / "d")
    loaded = DiffusionBaselinePipeline.from_pretrained(tmp_path / "d")
    assert loaded.prompt_world == WORLD
    with pytest.raises(ValueError, match="never saw 'cat'"):
        loaded("a cat", num_inference_steps=1, strict=True)


def test_a_checkpoint_without_a_world_checks_nothing(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "old")
    loaded = TextToImage.from_pretrained(tmp_path / "old")
    assert loaded.prompt_world is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded("a cat", strict=True)


def test_generate_parses_prompts_of_a_scene_world_checkpoint(capsys, known, tmp_path):
    scene = dataclasses.replace(WORLD, grammar=SCENE_GRAMMAR)
    TextToImage(known.vq, known.caption_tokenizer, known.decoder, prompt_world=scene).save_pretrained(tmp_path / "c")
    argv = ["generate", "--checkpoint", str(tmp_path / "c"), "--out", str(tmp_path / "x.png"), "--quiet"]
    code, _, stderr = run(capsys, *argv, "a red red circle")  # known words, but no caption of the grammar
    assert code == 0 and stderr.count("warning") == 1, stderr
    assert "t2i generate: warning: PROMPT: this checkpoint was trained on scene-world captions only" in stderr
    assert "could not read 'red' (word 3)" in stderr
    (tmp_path / "x.png").unlink()
    code, _, stderr = run(capsys, *argv, "a red cat", "--strict")
    assert code == 2 and "error: PROMPT: this checkpoint was trained on scene-world captions only" in stderr
    assert "(--strict)" in stderr and not (tmp_path / "x.png").exists()
    code, _, stderr = run(capsys, *argv, "the word cat")
    assert code == 0 and "warning" not in stderr


def test_generate_warns_by_words_for_other_checkpoints(capsys, known, tmp_path):
    known.save_pretrained(tmp_path / "c")  # WORLD has no grammar: the pipeline checks words
    code, _, stderr = run(capsys, "generate", "a red cat", "--checkpoint", str(tmp_path / "c"), "--out",
                          str(tmp_path / "x.png"), "--quiet")
    assert code == 0 and "t2i generate: warning: prompt 'a red cat': the checkpoint never saw 'cat'" in stderr
