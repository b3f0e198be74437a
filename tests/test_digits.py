"""The outside data set end to end: scikit-learn's digits as an image folder, read by the trainers' data path,
trained through the CLI, and judged by a classifier this project did not write."""

import json

import numpy as np
import pytest

from tools.digits import CHANCE, NAMES, DigitJudge, caption_of, image_to_scan, scan_to_image, split_indices
from tools.sources import read_images

from .test_cli import run


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from tools.digits import write_digits

    out = tmp_path_factory.mktemp("digits")
    for split in ("train", "test"):
        write_digits(out / split, split)
    return out


def test_the_split_is_fixed_and_disjoint():
    train, test = split_indices("train"), split_indices("test")
    assert len(train) == 1438 and len(test) == 359 and not set(train) & set(test)
    assert np.array_equal(train, split_indices("train"))
    with pytest.raises(ValueError, match=r"split must be one of \['train', 'test'\], got 'dev'"):
        split_indices("dev")


def test_digits_folder_reads_as_users_data(digits):
    rows = [json.loads(line) for line in (digits / "train" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 1438 and rows[0]["text"] == caption_of(rows[0]["label"])
    assert {r["text"] for r in rows} == {f"a handwritten digit {n}" for n in NAMES}
    images, captions, report = read_images(str(digits / "train"), 32, 10_000, progress=False)
    assert tuple(images.shape) == (1438, 3, 32, 32) and captions[0] == rows[0]["text"]
    assert report.to_dict()["skipped"] == 0


def test_the_outside_judge_reads_real_digits_and_not_blanks():
    judge = DigitJudge.fit()
    assert judge.test_accuracy() > 0.95 and judge.test_accuracy(32) > 0.95
    scan = np.zeros((8, 8))
    scan[1:7, 3:5] = 16  # a stroke
    assert np.allclose(image_to_scan(scan_to_image(scan)), scan, atol=0.1)


def test_train_and_judge_through_the_cli(digits, tmp_path, capsys):
    tiny_vq = {"model": {"image_size": 32, "base_channels": 8, "channel_mult": [1, 2, 2], "latent_dim": 8,
                         "codebook_size": 32, "codebook_dim": 4, "kmeans_init": False},
               "train": {"batch_size": 8, "max_steps": 3, "warmup_steps": 1, "num_train": 64}}
    tiny_ar = {"model": {"max_caption_tokens": 32, "dim": 32, "n_layers": 1, "n_heads": 4, "n_kv_heads": 2},
               "train": {"batch_size": 8, "max_steps": 3, "warmup_steps": 1, "num_train": 64,
                         "text_vocab_size": 128}}
    for name, preset in (("vq", tiny_vq), ("ar", tiny_ar)):
        (tmp_path / f"{name}.json").write_text(json.dumps(preset))
    data = str(digits / "train")
    code, _, _ = run(capsys, "train", "vq", "--preset", str(tmp_path / "vq.json"), "--data", data, "--out",
                     str(tmp_path / "vq"))
    assert code == 0
    code, _, stderr = run(capsys, "train", "ar", "--preset", str(tmp_path / "ar.json"), "--vq",
                          str(tmp_path / "vq" / "model"), "--data", data, "--out", str(tmp_path / "ar"))
    assert code == 0 and "warning: caption tokenizer: vocab_size 128 is too small" in stderr  # raised, said so
    code, stdout, _ = run(capsys, "eval", "digits", "--checkpoint", str(tmp_path / "ar" / "pipeline"),
                          "--num-per-digit", "2", "--quiet", "--grid", str(tmp_path / "grid.png"), "--out",
                          str(tmp_path / "r.json"))
    assert code == 0
    report = json.loads(stdout)
    assert report["chance"] == CHANCE == 0.1 and report["num_images"] == 20
    assert report["judge_accuracy_on_real_test_scans"] > 0.95
    assert 0 <= report["accuracy_on_generated"] <= 1 and set(report["accuracy_per_digit"]) == set(NAMES)
    assert (tmp_path / "grid.png").is_file() and json.loads((tmp_path / "r.json").read_text()) == report
