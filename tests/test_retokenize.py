"""Moving a baseline onto a tokenizer with the same pieces under other ids is exact; anything else is refused,
and `t2i release` refuses a baseline trained with another tokenizer."""

import pytest
import torch

from ar_model.text_tokenizer import CaptionTokenizer
from hybrid.pipeline import DiffusionBaselinePipeline
from tests.conftest import CAPTIONS
from tests.test_hybrid import baseline
from tools.retokenize import RetokenizeError, check_same_segmentation, piece_permutation, retokenize


@pytest.fixture(scope="module")
def other_ids(tokenizer) -> CaptionTokenizer:
    """Same captions, one drawn a little more often: the same pieces, merged in another order (other ids)."""
    return CaptionTokenizer.train(CAPTIONS * 20 + CAPTIONS[1:2] * 3, vocab_size=448, max_tokens=32)


def draw(model, tok):
    pipe = DiffusionBaselinePipeline(tok, model)
    pipe.set_progress_bar_config(disable=True)
    return pipe(CAPTIONS, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="pt").images


def test_moved_baseline_draws_the_same_images(tokenizer, other_ids):
    perm = piece_permutation(tokenizer, other_ids)
    assert perm != list(range(len(perm)))  # the ids really differ, so the unmoved model must go wrong
    check_same_segmentation(tokenizer, other_ids, CAPTIONS)
    model = baseline()
    with torch.no_grad():  # a random embedding row per piece, so that a wrong row changes the image
        model.text.embed.weight.normal_(generator=torch.Generator().manual_seed(1))
    before = draw(model, tokenizer)
    assert torch.equal(draw(retokenize(model, perm), other_ids), before)
    assert not torch.equal(draw(model, other_ids), before)


def test_different_pieces_are_refused(tokenizer):
    fewer = CaptionTokenizer.train(CAPTIONS[:3] * 20, vocab_size=448, max_tokens=32)
    with pytest.raises(RetokenizeError, match="different pieces"):
        piece_permutation(tokenizer, fewer)


def test_release_refuses_a_baseline_of_another_tokenizer(tmp_path, tokenizer, other_ids):
    from tools.cli.args import UsageError
    from tools.cli.release import _check_same_tokenizer

    other_ids.save_pretrained(tmp_path / "caption_tokenizer")  # beside tmp_path / "model", as a run folder
    with pytest.raises(UsageError, match="tools.retokenize"):
        _check_same_tokenizer(tokenizer, tmp_path / "model", tmp_path / "pipeline")
    _check_same_tokenizer(other_ids, tmp_path / "model", tmp_path / "pipeline")  # same: accepted


def test_the_command_writes_a_run_folder_release_accepts(tmp_path, tokenizer, other_ids):
    from tools.cli.release import _check_same_tokenizer
    from tools.retokenize import main

    model = baseline()
    model.save_pretrained(tmp_path / "run" / "model")
    tokenizer.save_pretrained(tmp_path / "run" / "caption_tokenizer")
    (tmp_path / "run" / "training.json").write_text('{"steps": 1, "train_seconds": 2.0}')
    other_ids.save_pretrained(tmp_path / "new")
    argv = ["--baseline", str(tmp_path / "run" / "model"), "--to-tokenizer", str(tmp_path / "new"),
            "--check-prompts", "2"]
    assert main(argv + ["--out", str(tmp_path / "run")]) == 2  # its own folder: refused, nothing overwritten
    assert main(argv + ["--out", str(tmp_path / "moved")]) == 0
    assert (tmp_path / "moved" / "training.json").read_text() == '{"steps": 1, "train_seconds": 2.0}'
    _check_same_tokenizer(other_ids, tmp_path / "moved" / "model", tmp_path / "pipe")  # accepted beside new ids
    fewer = CaptionTokenizer.train(CAPTIONS[:3] * 20, vocab_size=448, max_tokens=32)
    fewer.save_pretrained(tmp_path / "fewer")
    assert main(argv[:2] + ["--from-tokenizer", str(tmp_path / "fewer")] + argv[2:]
                + ["--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()
