"""An outside data set, end to end: scikit-learn's handwritten digits, and an outside judge for them.

The set (1,797 grey 8x8 scans of the digits 0-9, from the UCI optical-recognition data) ships inside
scikit-learn, so nothing is downloaded. ``write_digits`` turns it into the image-folder layout users have
(``metadata.jsonl`` + PNGs, at its own 8x8 size: the trainers fit it to the preset's size like any user's data),
captioned "a handwritten digit three", with a fixed train/test split. ``DigitJudge`` is a classifier that
scikit-learn fits on the train split's own labels, so the verdict on a generated image comes from a model this
project did not write and that shares nothing with the models it judges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from vq.pretrained import atomic_path, write_text

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
SPLITS = ("train", "test")
TEST_FRACTION = 0.2
CHANCE = 1 / len(NAMES)


def caption_of(label: int) -> str:
    return f"a handwritten digit {NAMES[label]}"


def _load():
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the digits data set ships with scikit-learn: pip install scikit-learn "
                         "(or pip install -e '.[test]')") from None
    digits = load_digits()
    return digits.images, digits.target  # (1797, 8, 8) in [0, 16], (1797,)


def split_indices(split: str, num: int = 1797) -> np.ndarray:
    """The fixed split: a seeded permutation, the last ``TEST_FRACTION`` of it for testing."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    order = np.random.default_rng(0).permutation(num)
    cut = num - round(num * TEST_FRACTION)
    return np.sort(order[:cut] if split == "train" else order[cut:])


def scan_to_image(scan: np.ndarray) -> Image.Image:
    """An 8x8 scan in [0, 16] (16: ink) -> dark ink on white paper, 8-bit RGB."""
    grey = np.round(255 - scan * (255 / 16)).astype(np.uint8)
    return Image.fromarray(grey, "L").convert("RGB")


def image_to_scan(image: Image.Image) -> np.ndarray:
    """Any image -> the 8x8 [0, 16] scan the classifier reads (area average: what the scanner did)."""
    grey = np.asarray(image.convert("L").resize((8, 8), Image.BOX), dtype=np.float64)
    return (255 - grey) * (16 / 255)


def write_digits(out_dir: str | Path, split: str = "train") -> dict:
    """Write ``split`` as an image folder: ``images/NNNN.png`` (8x8) and ``metadata.jsonl`` with ``file_name``,
    ``text`` and ``label``; ``metadata.jsonl`` is written last and atomically. Returns a summary."""
    scans, labels = _load()
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for index in split_indices(split, len(scans)):
        name = f"images/{index:04d}.png"
        with atomic_path(out_dir / name) as tmp:
            scan_to_image(scans[index]).save(tmp, format="PNG")
        rows.append({"file_name": name, "text": caption_of(int(labels[index])), "label": int(labels[index])})
    write_text(out_dir / "metadata.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    counts = np.bincount([r["label"] for r in rows], minlength=len(NAMES))
    return {"out": str(out_dir), "split": split, "images": len(rows), "image_size": 8,
            "per_digit": dict(zip(NAMES, counts.tolist()))}


@dataclass
class DigitJudge:
    """scikit-learn's SVC (the RBF kernel of its own digits example) fitted on the train split's labels."""

    model: object

    @classmethod
    def fit(cls) -> "DigitJudge":
        from sklearn.svm import SVC

        scans, labels = _load()
        train = split_indices("train", len(scans))
        return cls(SVC(gamma=0.001).fit(scans[train].reshape(len(train), -1), labels[train]))

    def predict(self, images: list[Image.Image]) -> np.ndarray:
        return self.model.predict(np.stack([image_to_scan(im).reshape(-1) for im in images]))

    def test_accuracy(self, image_size: int | None = None) -> float:
        """Accuracy on the real held-out scans, as PNGs and, given ``image_size``, fitted to that size as the
        trainers fit them (so a generated image and a real one take the same way to the classifier)."""
        from tools.sources import fit_image

        scans, labels = _load()
        test = split_indices("test", len(scans))
        images = [scan_to_image(scans[i]) for i in test]
        predicted = self.predict([fit_image(im, image_size) for im in images] if image_size else images)
        return float((predicted == labels[test]).mean())


def evaluate_digits(pipe, num_per_digit: int, seed: int = 0, progress: bool = True,
                    **sampling) -> tuple[dict, Image.Image]:
    """Generate ``num_per_digit`` images for each of the ten captions and let the outside judge read them.

    Returns the report (the judge's own accuracy on the real held-out scans, its accuracy on the generated
    images per digit and overall, chance beside them) and a grid: one row per digit, generated images with the
    judge's reading drawn under each."""
    import torch
    from PIL import ImageDraw
    from tqdm.auto import tqdm

    from tools.grid import image_grid

    judge = DigitJudge.fit()
    images, wanted = [], []
    for digit in tqdm(range(len(NAMES)), desc="generating digits", disable=not progress):
        gens = [torch.Generator().manual_seed(seed + digit * num_per_digit + i) for i in range(num_per_digit)]
        images += pipe(caption_of(digit), num_images_per_prompt=num_per_digit, generator=gens, **sampling).images
        wanted += [digit] * num_per_digit
    read = judge.predict(images)
    wanted = np.array(wanted)
    per_digit = {NAMES[d]: float((read[wanted == d] == d).mean()) for d in range(len(NAMES))}
    report = {"num_per_digit": num_per_digit, "num_images": len(images),
              "judge": "scikit-learn SVC(gamma=0.001) fitted on the train split's 8x8 scans and labels",
              "judge_accuracy_on_real_test_scans": judge.test_accuracy(images[0].size[0]),
              "accuracy_on_generated": float((read == wanted).mean()), "chance": CHANCE,
              "accuracy_per_digit": per_digit}

    def label(draw: ImageDraw.ImageDraw, index: int, xy: tuple[int, int]) -> None:
        ok = read[index] == wanted[index]
        draw.text((xy[0] + 2, xy[1] + 34), str(read[index]), fill=(0, 120, 0) if ok else (200, 0, 0))

    grid = image_grid(images, num_per_digit, tile=32, below=12, after_tile=label, background="white")
    return report, grid
