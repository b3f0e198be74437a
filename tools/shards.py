"""Data sets as webdataset tar shards: ``make_shards`` writes them, ``load_shards`` streams them with their scenes
(the trainers read them, like any other source, through ``tools.sources``).

A data folder holds ``{split}-{k:05d}.tar`` shards (each sample: ``png``, ``txt`` caption, ``json`` scene) and
``{split}.json``, the manifest, written last. Each shard and the manifest are written atomically, and readers
go through the manifest, so a killed run leaves nothing a reader would accept.
"""

from __future__ import annotations

import hashlib
import io
import json
import random
from pathlib import Path

import webdataset as wds
from PIL import Image
from tqdm.auto import tqdm

from ar_model.pipeline_utils import pil_to_pixels
from tools.world import CATEGORIES, SamplingOptions, caption, render, sample_scene
from tools.world.config import WorldConfig
from vq.pretrained import atomic_path, write_text

SPLITS = ("train", "heldout")  # heldout: scenes whose words come from the held-out word list


def scene_seed(seed: int, split: str, index: int) -> int:
    """A seed per scene, stable across machines and Python versions (unlike ``hash``)."""
    digest = hashlib.sha256(f"{split}:{seed}:{index}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def make_shards(out_dir: str | Path, num: int, world: WorldConfig, seed: int = 0, split: str = "train",
                shard_size: int = 1000, progress: bool = True,
                category_weights: dict[str, float] | None = None) -> Path:
    """Write ``num`` scenes as shards of ``shard_size``; returns the manifest's path.

    ``category_weights`` (category name -> relative weight; categories not named weigh 1) changes how often
    each category is drawn; None draws them uniformly, scene for scene as before.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if not isinstance(num, int) or num < 1:
        raise ValueError(f"num must be a positive integer, got {num!r}")
    if not isinstance(shard_size, int) or shard_size < 1:
        raise ValueError(f"shard_size must be a positive integer, got {shard_size!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = None
    if category_weights is not None:
        unknown = sorted(set(category_weights) - set(CATEGORIES))
        if unknown:
            raise ValueError(f"category_weights: unknown categories {unknown}; allowed: {list(CATEGORIES)}")
        weights = tuple(float(category_weights.get(c, 1.0)) for c in CATEGORIES)
    opts = SamplingOptions(words=split, max_word_len=world.max_word_len, category_weights=weights)
    names = []
    bar = tqdm(total=num, desc=f"writing {split} shards", unit="scene", disable=not progress)
    for start in range(0, num, shard_size):
        name = f"{split}-{start // shard_size:05d}.tar"
        with atomic_path(out_dir / name) as tmp, open(tmp, "wb") as f, wds.TarWriter(f, encoder=False, mtime=0) as tar:
            for index in range(start, min(start + shard_size, num)):
                scene = sample_scene(scene_seed(seed, split, index), "mixed", opts)
                tar.write({
                    "__key__": f"{index:08d}",
                    "png": png_bytes(render(scene, world.image_size)),
                    "txt": caption(scene).encode(),
                    "json": json.dumps(scene.to_dict()).encode(),
                })
                bar.update()
        names.append(name)
    bar.close()
    manifest = {"split": split, "num": num, "seed": seed, "world": world.to_dict(), "shards": names}
    if weights is not None:
        manifest["category_weights"] = dict(zip(CATEGORIES, weights))
    path = out_dir / f"{split}.json"
    write_text(path, json.dumps(manifest, indent=2))
    return path


def read_manifest(data_dir: str | Path, split: str = "train") -> dict:
    path = Path(data_dir) / f"{split}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"no {split} data in {str(data_dir)!r}: {path.name} is missing (make it with 't2i data make')"
        )
    return json.loads(path.read_text())


def _to_sample(sample: dict) -> dict:
    return {
        "key": sample["__key__"],
        "image": pil_to_pixels([Image.open(io.BytesIO(sample["png"]))])[0],  # (3, H, W) in [0, 1]
        "caption": sample["txt"].decode(),
        "scene": json.loads(sample["json"]),
    }


def _every_shard(urls):
    yield from urls


def load_shards(data_dir: str | Path, split: str = "train", shuffle_buffer: int = 0, seed: int = 0,
                split_by_node: bool = True) -> wds.WebDataset:
    """Stream the samples of a split: dicts with ``image`` (3, H, W) float in [0, 1], ``caption``, ``scene``.

    With ``shuffle_buffer`` > 0, shards and samples are shuffled deterministically from ``seed``. Under
    several processes (``accelerate launch``) each rank reads its own shards, unless ``split_by_node`` is False
    (for a trainer that holds the whole data set and splits each batch itself).
    """
    manifest = read_manifest(data_dir, split)
    urls = [str(Path(data_dir) / name) for name in manifest["shards"]]
    shuffle = shuffle_buffer > 0
    dataset = wds.WebDataset(
        urls, shardshuffle=len(urls) if shuffle else False, detshuffle=True, seed=seed,
        nodesplitter=wds.split_by_node if split_by_node else _every_shard, empty_check=False,
    )
    if shuffle:
        dataset = dataset.shuffle(shuffle_buffer, rng=random.Random(seed))
    return dataset.map(_to_sample)
