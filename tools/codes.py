"""VQ codes extracted once to disk (LlamaGen's ``extract_codes``), for training the decoder on data of any size.

``t2i data encode`` streams a data source through the VQ tokenizer a batch at a time and writes code shards:
``codes-NNNNN.npy`` (n, h * w) int16 and ``captions-NNNNN.jsonl`` (key and caption per row), then ``codes.json``
(written last) with the tokenizer's config and weight digest, the shard list and the skip report.

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
    """Rows of several memory-mapped ``.npy`` arrays seen as one: ``store[idx]`` (a LongTensor of global rows)
    reads just those rows and returns a tensor."""

    def __init__(self, paths: list[Path]):
        self.arrays = [np.load(p, mmap_mode="r") for p in paths]
        self.starts = np.cumsum([0] + [len(a) for a in self.arrays])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def __getitem__(self, idx: torch.Tensor) -> torch.Tensor:
        rows = np.asarray(idx, dtype=np.int64)
        shard = np.searchsorted(self.starts, rows, side="right") - 1
        out = np.stack([self.arrays[s][r - self.starts[s]] for s, r in zip(shard, rows)])
        return torch.from_numpy(out)


class CodeShards:
    """A folder written by ``encode_source``: ``codes``, a ``RowStore`` of (h * w) int16 rows, and, read when
    asked for (a run needs them once, to train its caption tokenizer), the captions and keys in the same order."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        manifest = self.folder / MANIFEST_NAME
        if not manifest.is_file():
            raise ValueError(f"--codes: {str(self.folder)!r} has no {MANIFEST_NAME}; write it with 't2i data encode'")
        self.manifest = json.loads(manifest.read_text())
        self.codes = RowStore([self.folder / s["codes"] for s in self.manifest["shards"]])

    def __len__(self) -> int:
        return len(self.codes)

    def captions_and_keys(self) -> tuple[list[str], list[str]]:
        captions, keys = [], []
        for shard in self.manifest["shards"]:
            for line in (self.folder / shard["captions"]).read_text().splitlines():
                row = json.loads(line)
                captions.append(row["text"])
                keys.append(row["key"])
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
                  batch_size: int = 256, strict: bool = False, progress: bool = True) -> Path:
    """Stream the usable samples of ``spec`` (any source ``tools.sources`` reads) through ``vq`` and write code
    shards to ``out_dir``; at most ``num`` samples. Holds one batch of images at a time. Returns the manifest."""
    from tools.sources import SkipReport, usable_samples

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, shards = SkipReport(), []
    codes_part, rows_part, batch, batch_rows = [], [], [], []

    def flush_batch():
        if batch:
            x = torch.stack(batch).float().div(255)
            codes_part.append(vq.encode(x).flatten(1).to(torch.int16).cpu().numpy())
            rows_part.extend(batch_rows)
            batch.clear()
            batch_rows.clear()

    def flush_shard():
        flush_batch()
        if not rows_part:
            return
        index = len(shards)
        names = {"codes": f"codes-{index:05d}.npy", "captions": f"captions-{index:05d}.jsonl"}
        with atomic_path(out_dir / names["codes"]) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, np.concatenate(codes_part))
        write_text(out_dir / names["captions"], "".join(json.dumps(r) + "\n" for r in rows_part))
        shards.append({**names, "num": len(rows_part)})
        codes_part.clear()
        rows_part.clear()

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
