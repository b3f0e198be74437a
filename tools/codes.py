"""VQ codes extracted once to disk (LlamaGen's ``extract_codes``), for training the decoder on data of any size.

``t2i data encode`` streams a data source through the VQ tokenizer a batch at a time and writes code shards:
``codes-NNNNN.npy`` (n, h * w) int16 and ``captions-NNNNN.jsonl`` (key and caption per row), with
``--with-images`` also ``images-NNNNN.npy`` (n, 3, S, S) uint8, the images as fitted to the tokenizer's size
(what the refiner and the baseline learn to draw), then ``codes.json`` (written last) with the tokenizer's
config and weight digest, the shard list and the skip report.

A trainer opens them with ``CodeShards``: the ``.npy`` files are memory-mapped, so a batch reads only its own
rows from disk and memory stays flat however many images there are. Random access (not a sequential stream)
keeps the trainer's guarantee: the batch at step t is a pure function of (seed, t), so a killed run resumes with
the same batches and losses, and under ``accelerate launch`` each process takes its share of every global batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from vq.pretrained import atomic_path, write_text

MANIFEST_NAME = "codes.json"


def weights_digest(module: torch.nn.Module) -> str:
    """What tells which tokenizer made a set of codes: the digest of its weights as float32."""
    from tools.train.loop import state_digest

    return state_digest(module, torch.float32)


class RowStore:
    """Rows of several memory-mapped ``.npy`` arrays seen as one: ``store[idx]`` (a LongTensor of global rows, or
    a slice) reads just those rows and returns a tensor. ``limit``: only the first that many rows are seen."""

    def __init__(self, paths: list[Path], limit: int | None = None):
        self.arrays = [np.load(p, mmap_mode="r") for p in paths]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])
        self.num = int(self.starts[-1]) if limit is None else min(limit, int(self.starts[-1]))

    def __len__(self) -> int:
        return self.num

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.arrays[0].shape[1:])

    @property
    def dtype(self) -> torch.dtype:
        return torch.from_numpy(np.empty(0, self.arrays[0].dtype)).dtype

    def __getitem__(self, idx: torch.Tensor | slice) -> torch.Tensor:
        if isinstance(idx, slice):
            idx = range(len(self))[idx]
        rows = np.asarray(idx, dtype=np.int64)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows {rows.min()}..{rows.max()} outside the store's {len(self)}")
        if not rows.size:
            return torch.from_numpy(np.empty((0, *self.arrays[0].shape[1:]), self.arrays[0].dtype))
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.stack([self.arrays[s][r - self.starts[s]] for s, r in zip(shard, rows)])
        return torch.from_numpy(out)


class RowSubset:
    """The rows ``kept`` of a store (e.g. the samples whose captions fit), indexed from 0, read when asked for."""

    def __init__(self, store: RowStore, kept: list[int]):
        self.store, self.kept = store, torch.as_tensor(kept, dtype=torch.long)
        self.shape, self.dtype = (len(kept), *store.shape[1:]), store.dtype

    def __len__(self) -> int:
        return len(self.kept)

    def __getitem__(self, idx: torch.Tensor | slice) -> torch.Tensor:
        return self.store[self.kept[idx]]


class CodeShards:
    """A folder written by ``encode_source``: ``codes``, a ``RowStore`` of (h * w) int16 rows, ``images`` (a
    ``RowStore`` of uint8 (3, S, S) rows, or None if encoded without them) and, read when asked for (a run needs
    them once, to train its caption tokenizer), the captions and keys in the same order. ``limit``: only the
    first that many samples are seen."""

    def __init__(self, folder: str | Path, limit: int | None = None):
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST_NAME
        if not manifest.is_file():
            raise ValueError(f"--codes: {str(self.folder)!r} has no {MANIFEST_NAME}; write it with 't2i data encode'")
        self.manifest = json.loads(manifest.read_text())
        shards = self.manifest["shards"]
        self.codes = RowStore([self.folder / s["codes"] for s in shards], limit)
        self.images = RowStore([self.folder / s["images"] for s in shards], limit) \
            if shards and all("images" in s for s in shards) else None

    def __len__(self) -> int:
        return len(self.codes)

    def require_images(self, trainer: str) -> RowStore:
        if self.images is None:
            raise ValueError(f"--codes: {str(self.folder)!r} holds codes but not the images {trainer} learns to "
                             "draw; encode it again with 't2i data encode ... --with-images'")
        return self.images

    def captions_and_keys(self) -> tuple[list[str], list[str]]:
        captions, keys = [], []
        for shard in self.manifest["shards"]:
            for line in (self.folder / shard["captions"]).read_text().splitlines():
                row = json.loads(line)
                captions.append(row["text"])
                keys.append(row["key"])
        captions, keys = captions[:len(self)], keys[:len(self)]
        if len(captions) != len(self.codes):
            raise ValueError(f"--codes: {str(self.folder)!r} holds {len(self.codes)} code rows but "
                             f"{len(captions)} captions")
        return captions, keys

    def check_tokenizer(self, vq) -> None:
        """The codes must come from this VQ tokenizer (same config and weights): a decoder reads no other's."""
        same_config = self.manifest["vq_config"] == json.loads(json.dumps(vq.config.to_dict()))  # tuples as lists
        if not same_config or self.manifest["vq_digest"] != weights_digest(vq):
            raise ValueError(f"--codes: {str(self.folder)!r} was encoded with another VQ tokenizer than --vq "
                             "(its config or weights differ); encode the data again with this one")


@torch.no_grad()
def encode_source(spec: str, vq, out_dir: str | Path, num: int | None = None, shard_size: int = 10_000,
                  batch_size: int = 256, strict: bool = False, progress: bool = True,
                  with_images: bool = False) -> Path:
    """Stream the usable samples of ``spec`` (any source ``tools.sources`` reads) through ``vq`` and write code
    shards to ``out_dir``; at most ``num`` samples; ``with_images``: the fitted images too. Holds one shard of
    codes (and images) at a time. Returns the manifest."""
    from tools.sources import SkipReport, usable_samples

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, shards = SkipReport(), []
    codes_part, images_part, rows_part, batch, batch_rows = [], [], [], [], []

    def flush_batch():
        if batch:
            pixels = torch.stack(batch)
            codes_part.append(vq.encode(pixels.float().div(255)).flatten(1).to(torch.int16).cpu().numpy())
            if with_images:
                images_part.append(pixels.numpy())
            rows_part.extend(batch_rows)
            batch.clear()
            batch_rows.clear()

    def flush_shard():
        flush_batch()
        if not rows_part:
            return
        index = len(shards)
        names = {"codes": f"codes-{index:05d}.npy", "captions": f"captions-{index:05d}.jsonl"}
        arrays = {"codes": codes_part}
        if with_images:
            names["images"], arrays["images"] = f"images-{index:05d}.npy", images_part
        for name, parts in arrays.items():
            with atomic_path(out_dir / names[name]) as tmp:
                with open(tmp, "wb") as f:
                    np.save(f, np.concatenate(parts))
        write_text(out_dir / names["captions"], "".join(json.dumps(r) + "\n" for r in rows_part))
        shards.append({**names, "num": len(rows_part)})
        for part in (codes_part, images_part, rows_part):
            part.clear()

    size = vq.config.image_size
    total = 0
    for key, image, text in usable_samples(spec, size, report, strict, progress, total=num):
        batch.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
        batch_rows.append({"key": key, "text": text})
        total += 1
        if len(batch) == batch_size:
            flush_batch()
        if len(rows_part) + len(batch) >= shard_size:
            flush_shard()
        if num is not None and total >= num:
            break
    flush_shard()
    manifest = {"source": spec, "num": total, "image_size": size, "grid_size": vq.config.grid_size,
                "codebook_size": vq.config.vocab_size, "vq_config": vq.config.to_dict(),
                "vq_digest": weights_digest(vq), "shards": shards, "report": report.to_dict()}
    write_text(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=2))  # last: its presence marks the set whole
    return out_dir / MANIFEST_NAME
