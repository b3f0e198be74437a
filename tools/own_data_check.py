"""The new user's check (issue "Train on your own images"): 200 images and captions of one's own in four formats,
every trainer on each, and the skip report compared with the files that were made unusable.

    python -m tools.own_data_check --out runs/own-data-check

Writes, in OUT: ``pairs-png`` (PNG + same-named .txt, sub-folders), ``pairs-jpg`` (JPG + .txt), ``shards``
(img2dataset-style webdataset shards: jpg + txt, every fifth caption in a json member instead, read by a brace
pattern) and ``imagefolder`` (PNG and WebP with a metadata.jsonl). The images are of 6 sizes (33 to 200 px a side)
and 4 modes (RGB, L, RGBA, P); three files per format are unusable (truncated, not an image, zero bytes) and one
caption is blank. Then, per format, with small presets (``PRESETS``) for 2 steps each (about 10 minutes in all
on 2 cores): ``t2i train vq``, ``t2i train ar``, ``t2i train refiner`` and ``t2i train diffusion`` on the source,
and ``t2i data encode --with-images`` with the three trainers again on the encoded shards. Prints one JSON report:
per format and command, its exit code, seconds and the keys it skipped, and whether they are exactly the four
made unusable.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import webdataset as wds
from PIL import Image, ImageDraw

NUM = 200
SIZES = [(64, 64), (80, 60), (50, 120), (200, 150), (33, 33), (96, 128)]
MODES = ["RGB", "L", "RGBA", "P"]
COLOURS = {"red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
BROKEN = {7: b"\x89PNG\r\n\x1a\n truncated", 91: b"this is not an image", 150: b""}  # index -> file bytes
BLANK_CAPTION = 42
# Small presets, so the check is about reading data, not training: 2 steps, batch 8, no compile.
PRESETS = {
    "vq": {"model": {"image_size": 64, "base_channels": 8, "channel_mult": [1, 2, 4], "num_res_blocks": 1,
                     "latent_dim": 16, "codebook_size": 64, "codebook_dim": 8},
           "train": {"batch_size": 8, "max_steps": 2, "warmup_steps": 1}},
    "ar": {"model": {"max_caption_tokens": 48, "dim": 32, "n_layers": 1, "n_heads": 4, "n_kv_heads": 2},
           "train": {"batch_size": 8, "max_steps": 2, "warmup_steps": 1, "text_vocab_size": 200}},
    "refiner": {"model": {"image_size": 64, "block_out_channels": [8, 16], "layers_per_block": 1,
                          "norm_num_groups": 4, "target": "residual"},
                "train": {"batch_size": 8, "max_steps": 2, "warmup_steps": 1}},
    "diffusion": {"model": {"image_size": 64, "block_out_channels": [8, 16], "layers_per_block": 1,
                            "norm_num_groups": 4, "attention_head_dim": 8, "max_caption_tokens": 48, "text_dim": 16,
                            "text_layers": 1, "text_heads": 2},
                  "train": {"batch_size": 8, "max_steps": 2, "warmup_steps": 1}},
}


def sample(i: int) -> tuple[Image.Image, str]:
    """Image i: a shape of some colour on a plain background, of one of the sizes and modes; and its caption."""
    rng = np.random.default_rng(i)
    name, colour = list(COLOURS.items())[i % len(COLOURS)]
    w, h = SIZES[i % len(SIZES)]
    image = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 80, 3)))
    box = [int(w * 0.2), int(h * 0.2), int(w * 0.8), int(h * 0.8)]
    shape = "square" if i % 2 else "circle"
    (ImageDraw.Draw(image).rectangle if shape == "square" else ImageDraw.Draw(image).ellipse)(box, fill=colour)
    mode = MODES[i % len(MODES)]
    image = image.convert(mode) if mode != "P" else image.quantize(16)
    caption = "   " if i == BLANK_CAPTION else f"a photo of a {name} {shape}, number {i}"
    return image, caption


def encoded(image: Image.Image, fmt: str) -> bytes:
    if fmt == "JPEG" and image.mode not in ("RGB", "L"):
        image = image.convert("RGB")  # what a JPEG camera or scraper hands over
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def write_formats(root: Path) -> dict[str, str]:
    """The four sources; returns name -> the spec a trainer's --data takes."""
    specs = {}
    for name, fmt, ext in (("pairs-png", "PNG", "png"), ("pairs-jpg", "JPEG", "jpg")):
        folder = root / name
        for i in range(NUM):
            sub = folder / f"part{i % 3}"
            sub.mkdir(parents=True, exist_ok=True)
            image, caption = sample(i)
            (sub / f"img{i:03d}.{ext}").write_bytes(BROKEN.get(i, encoded(image, fmt)))
            (sub / f"img{i:03d}.txt").write_text(caption)
        specs[name] = str(folder)

    folder = root / "imagefolder"
    (folder / "train").mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(NUM):
        image, caption = sample(i)
        fmt, ext = ("WEBP", "webp") if i % 4 == 3 else ("PNG", "png")
        (folder / "train" / f"{i:03d}.{ext}").write_bytes(BROKEN.get(i, encoded(image, fmt)))
        rows.append({"file_name": f"train/{i:03d}.{ext}", "text": caption})
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    specs["imagefolder"] = str(folder)

    folder = root / "shards"
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(4):
        with wds.TarWriter(str(folder / f"{shard:05d}.tar")) as tar:
            for i in range(shard * NUM // 4, (shard + 1) * NUM // 4):
                image, caption = sample(i)
                record = {"__key__": f"{i:09d}", "jpg": BROKEN.get(i, encoded(image, "JPEG"))}
                if i % 5 == 0:  # img2dataset's json member, with the caption under "caption"
                    record["json"] = json.dumps({"caption": caption, "key": f"{i:09d}"}).encode()
                else:
                    record["txt"] = caption.encode()
                tar.write(record)
    specs["shards"] = str(folder / "{00000..00003}.tar")
    return specs


def expected_skips() -> set[int]:
    return set(BROKEN) | {BLANK_CAPTION}


def skipped_indices(record: dict) -> set[int]:
    """The sample numbers in a skip report (its keys: paths, file names, or SHARD.tar:KEY)."""
    return {int("".join(ch for ch in Path(s["key"].rsplit(":", 1)[-1]).stem if ch.isdigit()))
            for s in record["skipped_samples"]}


def t2i(*argv: str) -> dict:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tools.cli", *argv], capture_output=True, text=True)
    result = {"exit": done.returncode, "seconds": round(time.perf_counter() - start, 1)}
    if done.returncode:
        result["stderr"] = done.stderr.strip().splitlines()[-3:]
    return result


def check(out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for name, preset in PRESETS.items():
        (out / f"{name}.json").write_text(json.dumps(preset))
    specs = write_formats(out / "data")
    report: dict = {"num": NUM, "made_unusable": sorted(expected_skips()), "formats": {}}
    for name, spec in specs.items():
        runs = out / "runs" / name
        result: dict = {"spec": spec}

        def trained(key: str, folder: Path, *argv: str) -> None:
            result[key] = t2i(*argv, "--out", str(folder))
            if not result[key]["exit"] and (folder / "data.json").is_file():
                got = skipped_indices(json.loads((folder / "data.json").read_text()))
                result[key]["skipped"] = sorted(got)

        vq = runs / "vq"
        trained("train vq", vq, "train", "vq", "--preset", str(out / "vq.json"), "--data", spec)
        trained("train ar", runs / "ar", "train", "ar", "--preset", str(out / "ar.json"), "--vq", str(vq / "model"),
                "--data", spec)
        trained("train refiner", runs / "refiner", "train", "refiner", "--preset", str(out / "refiner.json"),
                "--vq", str(vq / "model"), "--data", spec)
        tokenizer = runs / "ar" / "caption_tokenizer"
        trained("train diffusion", runs / "diffusion", "train", "diffusion", "--preset",
                str(out / "diffusion.json"), "--tokenizer", str(tokenizer), "--data", spec)
        codes = runs / "codes"
        result["data encode"] = t2i("data", "encode", spec, "--vq", str(vq / "model"), "--out", str(codes),
                                    "--with-images")
        if not result["data encode"]["exit"]:
            result["data encode"]["skipped"] = sorted(skipped_indices(
                json.loads((codes / "codes.json").read_text())["report"]))
        trained("train ar --codes", runs / "ar-codes", "train", "ar", "--preset", str(out / "ar.json"), "--vq",
                str(vq / "model"), "--codes", str(codes))
        trained("train refiner --codes", runs / "refiner-codes", "train", "refiner", "--preset",
                str(out / "refiner.json"), "--vq", str(vq / "model"), "--codes", str(codes))
        trained("train diffusion --codes", runs / "diffusion-codes", "train", "diffusion", "--preset",
                str(out / "diffusion.json"), "--tokenizer", str(tokenizer), "--codes", str(codes))
        reading = [v for k, v in result.items() if k != "spec" and "skipped" in v]
        result["all ran"] = all(not v["exit"] for k, v in result.items() if k not in ("spec", "all ran"))
        result["skips exactly the unusable"] = bool(reading) and all(
            set(v["skipped"]) == expected_skips() for v in reading)
        report["formats"][name] = result
        print(json.dumps({name: result}), file=sys.stderr)
    report["passed"] = all(r["all ran"] and r["skips exactly the unusable"] for r in report["formats"].values())
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="a scratch folder (data and runs are written there)")
    print(json.dumps(check(parser.parse_args().out), indent=2))


if __name__ == "__main__":
    main()
