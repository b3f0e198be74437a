"""Outside data read as it is (tools.sources): image folder + metadata.jsonl, image + .txt pairs, img2dataset-style
shards; mixed sizes fitted, corrupt files skipped and listed, a bad source a one-line error."""

import io
import json

import pytest
import webdataset as wds
from PIL import Image

from tools.sources import DataSourceError, SkippedSample, convert_source, inspect_source, read_images

from .test_cli import run

SIZES = [(40, 30), (64, 64), (20, 50), (33, 33)]


def _image_bytes(size, fmt, colour=(200, 30, 30)):
    buf = io.BytesIO()
    Image.new("L" if fmt == "PNG" and size[0] == 20 else "RGB", size, colour[0] if size[0] == 20 else colour).save(
        buf, format=fmt)
    return buf.getvalue()


def _folder(tmp_path, kind, fmt="PNG"):
    """Four good images of mixed sizes and modes, one corrupt file, one empty caption."""
    root = tmp_path / kind
    (root / "sub").mkdir(parents=True)
    names = [f"img{i}.{fmt.lower()}" for i in range(4)] + ["sub/broken.png", "sub/empty.png"]
    for i, name in enumerate(names[:4]):
        (root / name).write_bytes(_image_bytes(SIZES[i], fmt))
    (root / "sub/broken.png").write_bytes(b"not an image at all")
    (root / "sub/empty.png").write_bytes(_image_bytes((16, 16), "PNG"))
    captions = [f"a red square number {i}" for i in range(5)] + ["  "]
    if kind == "imagefolder":
        (root / "metadata.jsonl").write_text("".join(
            json.dumps({"file_name": n, "text": c}) + "\n" for n, c in zip(names, captions)))
    else:
        for n, c in zip(names, captions):
            (root / n).with_suffix(".txt").write_text(c)
    return root


def _shards(tmp_path):
    out = tmp_path / "shards"
    out.mkdir()
    for shard in range(2):
        with wds.TarWriter(str(out / f"{shard:05d}.tar")) as tar:
            for i in range(3):
                key = f"{shard}{i:04d}"
                sample = {"__key__": key, "jpg": _image_bytes(SIZES[i], "JPEG")}
                if i == 2:  # img2dataset's json member carries the caption too
                    sample["json"] = json.dumps({"caption": f"caption {key}"}).encode()
                else:
                    sample["txt"] = f"caption {key}".encode()
                if shard == 1 and i == 0:
                    sample["jpg"] = b"\xff\xd8 truncated"
                tar.write(sample)
    return out


@pytest.mark.parametrize("kind,fmt", [("imagefolder", "PNG"), ("pairs", "PNG"), ("pairs", "JPEG")])
def test_folders_are_read_fitted_and_skips_listed(tmp_path, kind, fmt):
    root = _folder(tmp_path, kind, fmt)
    images, captions, report = read_images(str(root), 32, num=100, progress=False)
    assert images.shape == (4, 3, 32, 32) and str(images.dtype) == "torch.uint8"
    assert captions == [f"a red square number {i}" for i in range(4)]
    assert {(s["key"], s["reason"].split(":")[0]) for s in report.to_dict()["skipped_samples"]} == {
        ("sub/broken.png", "unreadable image"), ("sub/empty.png", "empty caption")}
    assert (report.read, report.kept) == (6, 4)
    assert images[0, 0].float().mean() > 150 and images[0, 2].float().mean() < 60  # red kept red after fitting
    with pytest.raises(SkippedSample, match="broken.png"):
        read_images(str(root), 32, num=100, strict=True, progress=False)


def test_shards_by_pattern_and_folder_and_convert(tmp_path):
    out = _shards(tmp_path)
    for spec in (str(out / "{00000..00001}.tar"), str(out), f"{out}/00000.tar,{out}/00001.tar"):
        images, captions, report = read_images(spec, 16, num=100, progress=False)
        assert len(images) == 5 and captions[2] == "caption 00002"
        assert [s["key"] for s in report.to_dict()["skipped_samples"]] == ["00001.tar:10000"]
    manifest = convert_source(str(out), tmp_path / "ours", 16, shard_size=2, progress=False)
    record = json.loads(manifest.read_text())
    assert (record["num"], len(record["shards"]), record["report"]["skipped"]) == (5, 3, 1)
    again, captions_again, _ = read_images(str(tmp_path / "ours"), 16, num=100, progress=False)
    assert captions_again == captions and again.shape == images.shape
    with pytest.raises(DataSourceError, match="holds 16 px images but 32 px"):
        read_images(str(tmp_path / "ours"), 32, num=100, progress=False)
    stats = inspect_source(str(out), progress=False)
    assert (stats["read"], stats["kept"], stats["skipped"], stats["distinct_sizes"]) == (6, 5, 1, 3)


@pytest.mark.parametrize("setup,spec,message", [
    (lambda p: (p / "empty").mkdir(), "{tmp}/empty", "holds no images"),
    (lambda p: (p / "m").mkdir() or (p / "m/metadata.jsonl").write_text('{"file_name": "a.png", "text": "x"}\n{oops'),
     "{tmp}/m", "line 2: not a JSON object"),
    (lambda p: (p / "n").mkdir() or (p / "n/metadata.jsonl").write_text('{"text": "x"}\n'),
     "{tmp}/n", 'needs a "file_name"'),
    (lambda p: None, "{tmp}/s/{00000..00003}.tar", "matches no file"),
])
def test_bad_sources_are_one_line_errors(tmp_path, setup, spec, message):
    setup(tmp_path)
    spec = spec.replace("{tmp}", str(tmp_path))
    with pytest.raises(DataSourceError, match=message):
        read_images(spec, 32, num=10, progress=False)


def test_cli_inspect_and_train_errors(capsys, tmp_path):
    root = _folder(tmp_path, "imagefolder")
    code, stdout, _ = run(capsys, "data", "inspect", str(root))
    assert code == 0 and json.loads(stdout)["skipped"] == 2
    code, _, stderr = run(capsys, "train", "vq", "--data", str(tmp_path / "nothing.tar"), "--out", str(tmp_path / "o"))
    assert code == 2 and "shard pattern" in stderr and "matches no file" in stderr
    code, _, stderr = run(capsys, "train", "vq", "--data", str(root), "--image-size", "30", "--out", str(tmp_path / "o"))
    assert code == 2 and "--image-size: image_size must be a multiple of the downsampling factor" in stderr
    assert not (tmp_path / "o").exists()
