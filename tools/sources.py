"""Training data as users have it, read as it is: images and captions from

- an **image folder** with a ``metadata.jsonl`` of ``{"file_name": ..., "text": ...}`` rows (the Hugging Face
  ``imagefolder`` layout that diffusers' text-to-image scripts read; ``file_name`` may name a sub-folder, and a
  sub-folder may hold its own ``metadata.jsonl``);
- a folder of **image + caption pairs**: ``cat.jpg`` beside ``cat.txt``, sub-folders allowed;
- **webdataset shards** as img2dataset writes them: a ``jpg``/``jpeg``/``png``/``webp`` member and a ``txt``
  caption (or a ``json`` member with a ``caption`` key); given as a ``.tar`` file, a brace pattern
  (``shards/{00000..00099}.tar``), a folder of ``.tar`` files, or several of these joined by commas;
- our own data folders (``t2i data make``, ``t2i data convert``), whose ``train.json`` lists their shards.

Every image is converted to RGB, its shorter side resized to the target size (bicubic) and the centre cropped
square (``PREPROCESSING``). A sample that cannot be used (unreadable image, missing file, empty caption) is
skipped and recorded with its key and why in a ``SkipReport``; with ``strict`` the first one is an error. A
source that cannot be read at all (no images, a bad ``metadata.jsonl`` line, a pattern matching nothing) raises
``DataSourceError`` with one line naming what was given.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import webdataset as wds
from braceexpand import braceexpand
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from tools.shards import png_bytes, read_manifest

IMAGE_EXTENSIONS = ("png", "jpg", "jpeg", "webp")
PREPROCESSING = "RGB; shorter side resized to the target size (bicubic), centre crop"
SHOWN_SKIPS = 200  # keys listed in a report; the counts cover them all


class DataSourceError(ValueError):
    """A data source that cannot be read at all; the message is one line naming what was given."""


class SkippedSample(ValueError):
    """A sample that cannot be used; raised under ``strict``."""


@dataclass
class SkipReport:
    """What reading a source kept and skipped, and why (every skipped key up to ``SHOWN_SKIPS``)."""

    read: int = 0
    kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    reasons: Counter = field(default_factory=Counter)
    kept_keys: list[str] = field(default_factory=list)  # filled by read_images, in the order of its images

    def skip(self, key: str, reason: str, strict: bool) -> None:
        if strict:
            raise SkippedSample(f"sample {key!r}: {reason} (drop --strict to skip such samples)")
        self.reasons[reason.split(":")[0]] += 1
        if len(self.skipped) < SHOWN_SKIPS:
            self.skipped.append((key, reason))

    def to_dict(self) -> dict:
        return {"read": self.read, "kept": self.kept, "skipped": sum(self.reasons.values()),
                "skipped_by_reason": dict(self.reasons),
                "skipped_samples": [{"key": k, "reason": r} for k, r in self.skipped]}


@dataclass(frozen=True)
class RawSample:
    """One sample before decoding: its key, a way to get the image bytes, and its caption (None if missing)."""

    key: str
    image_bytes: object  # a callable returning bytes, so a missing file is found while reading, per sample
    caption: str | None


# --- the four kinds of source ----------------------------------------------------------------------------------

def _image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower().lstrip(".") in IMAGE_EXTENSIONS)


def _imagefolder(folder: Path) -> Iterator[RawSample]:
    for meta in sorted(folder.rglob("metadata.jsonl")):
        for number, line in enumerate(meta.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{meta}, line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataSourceError(f"{where}: not a JSON object ({e.msg}): {line[:60]!r}") from None
            if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
                raise DataSourceError(f'{where}: each row needs a "file_name" string (and a "text" caption), '
                                      f"got {line[:60]!r}")
            path = meta.parent / row["file_name"]
            text = row.get("text", row.get("caption"))
            yield RawSample(str(path.relative_to(folder)), path.read_bytes, text if isinstance(text, str) else None)


def _pairs(folder: Path, images: list[Path]) -> Iterator[RawSample]:
    for path in images:
        text_file = path.with_suffix(".txt")
        caption = text_file.read_text(encoding="utf-8", errors="replace") if text_file.is_file() else None
        yield RawSample(str(path.relative_to(folder)), path.read_bytes, caption)


def _shard_sample(sample: dict) -> RawSample:
    members = {k.lower(): v for k, v in sample.items() if not k.startswith("__")}
    image = next((members[e] for e in IMAGE_EXTENSIONS if e in members), None)
    caption = members["txt"].decode("utf-8", errors="replace") if "txt" in members else None
    if caption is None and "json" in members:
        try:
            caption = json.loads(members["json"]).get("caption")
        except (ValueError, AttributeError):
            caption = None
    key = f"{Path(sample.get('__url__', '')).name}:{sample['__key__']}"
    if image is None:
        return RawSample(key, None, caption)
    return RawSample(key, lambda: image, caption)


def _shards(urls: list[str]) -> Iterator[RawSample]:
    dataset = wds.WebDataset(urls, shardshuffle=False, nodesplitter=lambda u: u, empty_check=False)
    try:
        for sample in dataset:
            yield _shard_sample(sample)
    except (OSError, ValueError, tarfile.TarError) as e:  # a truncated or non-tar file: the shard is named
        raise DataSourceError(f"cannot read the shards {_short(urls)}: {type(e).__name__}: {e}") from None


def _short(urls: list[str]) -> str:
    return repr(urls[0]) if len(urls) == 1 else f"{urls[0]!r} ... ({len(urls)} shards)"


def _shard_urls(spec: str) -> list[str]:
    urls = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        path = Path(part)
        if path.is_dir():
            found = sorted(str(p) for p in path.glob("*.tar"))
            if not found:
                raise DataSourceError(f"--data: folder {part!r} holds no .tar shards")
            urls += found
            continue
        expanded = list(braceexpand(part))
        missing = [u for u in expanded if not Path(u).is_file()]
        if missing:
            what = "matches no file" if len(missing) == len(expanded) else f"names missing files, e.g. {missing[0]!r}"
            raise DataSourceError(f"--data: shard pattern {part!r} {what}")
        urls += expanded
    return urls


def _world_urls(folder: Path) -> tuple[list[str], int | None]:
    manifest = read_manifest(folder)
    size = (manifest.get("world") or {}).get("image_size", manifest.get("image_size"))
    return [str(folder / name) for name in manifest["shards"]], size


def describe(spec: str) -> tuple[str, Iterator[RawSample], int | None]:
    """The kind of the source ``spec`` names, its raw samples (lazily) and, for our own data folders, the image
    size it was made at (else None)."""
    path = Path(spec)
    if path.is_dir():
        if (path / "train.json").is_file():
            urls, size = _world_urls(path)
            return "shards (t2i data folder)", _shards(urls), size
        if any(path.rglob("metadata.jsonl")):
            return "imagefolder (metadata.jsonl)", _imagefolder(path), None
        images = _image_files(path)
        if images:
            return "image + caption pairs", _pairs(path, images), None
        if any(path.glob("*.tar")):
            return "webdataset shards", _shards(_shard_urls(spec)), None
        raise DataSourceError(f"--data: folder {spec!r} holds no images ({', '.join(IMAGE_EXTENSIONS)}), no "
                              "metadata.jsonl, no .tar shards and no train.json (from 't2i data make')")
    if ".tar" in spec:
        return "webdataset shards", _shards(_shard_urls(spec)), None
    raise DataSourceError(f"--data: {spec!r} is neither a folder nor a .tar shard pattern")


# --- decoding ------------------------------------------------------------------------------------------------

def fit_image(image: Image.Image, size: int) -> Image.Image:
    """RGB, shorter side resized to ``size`` and the centre cropped square; an RGB image of that size is kept."""
    image = image.convert("RGB")
    if image.size == (size, size):
        return image
    return ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))


def decode(raw: RawSample) -> tuple[Image.Image | None, str | None]:
    """The sample's image (not yet fitted) or the reason it cannot be used."""
    if raw.caption is None:
        return None, "no caption"
    if not raw.caption.strip():
        return None, "empty caption"
    if raw.image_bytes is None:
        return None, f"no image member (one of {', '.join(IMAGE_EXTENSIONS)})"
    try:
        data = raw.image_bytes()
    except OSError as e:
        return None, f"missing file: {e.strerror or e}"
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:  # PIL's kinds of corrupt data
        return None, f"unreadable image: {type(e).__name__}"
    return image, None


def _decoded(samples: Iterator[RawSample], report: SkipReport, strict: bool, bar) -> Iterator[tuple]:
    """(raw sample, decoded image) for each usable sample; the others are counted in ``report``."""
    with bar:
        for raw in samples:
            bar.update()
            report.read += 1
            image, reason = decode(raw)
            if reason is not None:
                report.skip(raw.key, reason, strict)
                continue
            report.kept += 1
            yield raw, image


def usable_samples(spec: str, image_size: int, report: SkipReport, strict: bool = False,
                   progress: bool = True, total: int | None = None) -> Iterator[tuple[str, Image.Image, str]]:
    """The usable samples of a source, in its order, as (key, RGB image fitted to ``image_size``, caption);
    the rest are counted in ``report``."""
    kind, samples, made_at = describe(spec)
    if made_at is not None and made_at != image_size:
        raise DataSourceError(f"--data: {spec!r} holds {made_at} px images but {image_size} px are needed "
                              "(make the data at that size)")
    for raw, image in _decoded(samples, report, strict, tqdm(desc=f"reading {kind}", unit="image", total=total,
                                                             disable=not progress)):
        yield raw.key, fit_image(image, image_size), raw.caption.strip()
    if not report.kept:
        raise DataSourceError(f"--data: no usable image in {spec!r} ({kind}; {report.read} samples read, "
                              f"skipped: {dict(report.reasons) or 'none'})")


def read_images(spec: str, image_size: int, num: int, strict: bool = False,
                progress: bool = True) -> tuple[torch.Tensor, list[str], SkipReport]:
    """Up to ``num`` usable samples of a source: uint8 images (N, 3, S, S), their captions, and the report."""
    report, images, captions = SkipReport(), [], []
    for key, image, text in usable_samples(spec, image_size, report, strict, progress, total=num):
        images.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1))
        captions.append(text)
        report.kept_keys.append(key)
        if len(images) >= num:
            break
    return torch.stack(images), captions, report


def convert_source(spec: str, out_dir: str | Path, image_size: int, shard_size: int = 1000, strict: bool = False,
                   progress: bool = True) -> Path:
    """Write a source's usable samples as our training shards (``png`` + ``txt``) and a ``train.json`` manifest
    (written last, with the skip report); returns the manifest's path."""
    from vq.pretrained import atomic_path, write_text

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    report, names = SkipReport(), []
    samples = usable_samples(spec, image_size, report, strict, progress)
    while True:
        name = f"train-{len(names):05d}.tar"
        written = 0
        with atomic_path(out_dir / name) as tmp, open(tmp, "wb") as f, wds.TarWriter(f, encoder=False, mtime=0) as tar:
            for _, image, text in samples:
                tar.write({"__key__": f"{report.kept - 1:08d}", "png": png_bytes(image), "txt": text.encode()})
                written += 1
                if written == shard_size:
                    break
        if not written:
            (out_dir / name).unlink()
            break
        names.append(name)
        if written < shard_size:
            break
    manifest = {"split": "train", "num": report.kept, "source": spec, "image_size": image_size,
                "preprocessing": PREPROCESSING, "shards": names, "report": report.to_dict()}
    path = out_dir / "train.json"
    write_text(path, json.dumps(manifest, indent=2))
    return path


def inspect_source(spec: str, strict: bool = False, progress: bool = True) -> dict:
    """What a source holds, for ``t2i data inspect``: sample count, image sizes and modes, caption lengths, and
    what training would skip."""
    kind, samples, made_at = describe(spec)
    report, sizes, modes, lengths = SkipReport(), Counter(), Counter(), []
    for raw, image in _decoded(samples, report, strict, tqdm(desc=f"inspecting {kind}", unit="image",
                                                             disable=not progress)):
        sizes[f"{image.width}x{image.height}"] += 1
        modes[image.mode] += 1
        lengths.append(len(raw.caption.strip()))
    if not report.read:
        raise DataSourceError(f"--data: {spec!r} ({kind}) holds no samples")
    stats = {"kind": kind, "made_at_px": made_at, **report.to_dict(),
             "image_sizes": dict(sizes.most_common(10)), "distinct_sizes": len(sizes), "modes": dict(modes)}
    if lengths:
        stats["caption_chars"] = {"min": min(lengths), "mean": round(sum(lengths) / len(lengths), 1),
                                  "max": max(lengths)}
    return stats
