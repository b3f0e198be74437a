import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tools.cli import main

from .conftest import needs_tesseract


def run(capsys, *argv):
    """(exit code, stdout, stderr) of the t2i entry point, in process."""
    try:
        code = main(list(argv))
    except SystemExit as e:  # argparse's own errors
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@needs_tesseract
def test_render_writes_a_png_and_prints_a_passing_verdict(capsys, tmp_path):
    out = tmp_path / "scene.png"
    code, stdout, _ = run(capsys, "render", "the word CAT in blue at the bottom and a red circle at the top",
                          "--out", str(out))
    assert code == 0 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    verdict = json.loads(stdout)
    assert verdict["passed"] and verdict["category"] == "text_layout"


def test_prompts_all_gives_num_per_category(capsys):
    code, stdout, _ = run(capsys, "prompts", "--category", "all", "--num", "3", "--seed", "1")
    lines = stdout.splitlines()
    assert code == 0 and len(lines) == 24
    code, again, _ = run(capsys, "prompts", "--category", "all", "--num", "3", "--seed", "1")
    assert again == stdout
    _, other, _ = run(capsys, "prompts", "--category", "all", "--num", "3", "--seed", "2")
    assert other != stdout


def test_data_make(capsys, tmp_path):
    code, stdout, _ = run(capsys, "data", "make", "--num", "5", "--out", str(tmp_path / "d"))
    assert code == 0 and json.loads(stdout)["num"] == 5
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["train-00000.tar", "train.json"]


@needs_tesseract
def test_score_writes_report_and_failure_grid(capsys, tmp_path):
    from tools.world import layout, parse_caption, render
    import random

    prompts = ["a red circle", "a blue square at the top left", "the word CAT"]
    images = tmp_path / "images"
    images.mkdir()
    for i, p in enumerate(prompts):
        render(layout(parse_caption(p), random.Random(i)), 64).save(images / f"{i:03d}.png")
    # The second image answers the wrong prompt: it must fail.
    render(layout(parse_caption("a green diamond"), random.Random(0)), 64).save(images / "001.png")
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n")
    out = tmp_path / "report.json"
    code, stdout, _ = run(capsys, "score", "--images", str(images), "--prompts", str(tmp_path / "prompts.txt"),
                          "--out", str(out))
    assert code == 0
    report = json.loads(out.read_text())
    assert report["categories"]["single_object"]["pass_rate"] == 1.0
    assert report["categories"]["position"]["pass_rate"] == 0.0
    assert report["categories"]["text"]["pass_rate"] == 1.0
    assert report["text"]["word_accuracy"] == 1.0 and report["text"]["cer"] == 0.0
    assert [f["image"] for f in report["failures"]] == ["001.png"]
    assert [(i["image"], i["prompt"], i["passed"]) for i in report["images"]] == [
        ("000.png", prompts[0], True), ("001.png", prompts[1], False), ("002.png", prompts[2], True)]
    assert (tmp_path / "report_failures.png").exists()


BAD = [
    (["render", "a blu circle", "--out", "{tmp}/x.png"], "'blu'"),
    (["render", "a red circle", "--out", "{tmp}/x.jpg"], "ending in .png"),
    (["render", "a red circle", "--out", "{tmp}/missing/x.png"], "does not exist"),
    (["render", "a red circle", "--out", "{tmp}/x.png", "--size", "12"], "integer >= 48, got 12"),
    (["render", "a red circle", "--out", "{tmp}/x.png", "--preset", "huge"], "invalid choice: 'huge'"),
    (["render", "a red circle at the top and a blue square at the top", "--out", "{tmp}/x.png"], "no room"),
    (["data", "make", "--num", "0", "--out", "{tmp}/d"], "integer >= 1, got 0"),
    (["data", "make", "--num", "many", "--out", "{tmp}/d"], "got 'many'"),
    (["data", "make", "--num", "5", "--out", "{tmp}/d", "--split", "test"], "invalid choice: 'test'"),
    (["data", "make", "--num", "5", "--out", "{tmp}/d", "--category-weights", "txt=3"], "got 'txt=3'"),
    (["data", "make", "--num", "5", "--out", "{tmp}/d", "--category-weights", "text=-1"], "got 'text=-1'"),
    (["data", "make", "--num", "5", "--out", "{tmp}/d", "--category-weights", "text"], "CATEGORY=WEIGHT"),
    (["data", "make", "--num", "5", "--out", "{tmp}/d", "--category-weights",
      "single_object=0,position=0,two_objects=0,relation=0,counting=0,colour_attribution=0,text=0,text_layout=0"],
     "must not all be 0"),
    (["prompts", "--category", "colours", "--num", "3"], "invalid choice: 'colours'"),
    (["prompts", "--category", "text", "--num", "-1"], "integer >= 1, got -1"),
    (["prompts", "--category", "text", "--num", "3", "--words", "secret"], "invalid choice: 'secret'"),
    (["score", "--images", "{tmp}/nowhere", "--prompts", "{tmp}/p.txt", "--out", "{tmp}/r.json"], "does not exist"),
    (["score", "--images", "{tmp}", "--prompts", "{tmp}/bad.txt", "--out", "{tmp}/r.json"], "prompt 2"),
    (["score", "--images", "{tmp}", "--prompts", "{tmp}/p.txt", "--out", "{tmp}/r.png"], "ending in .json"),
    (["score", "--images", "{tmp}", "--prompts", "{tmp}/p.txt", "--out", "{tmp}/r.json"], "holds 0 PNG files"),
    (["score", "--images", "{tmp}"], "--prompts is required"),
    (["score", "--validate", "--num", "0"], "integer >= 1, got 0"),
    (["score", "--paired", "{tmp}/nowhere.json", "{tmp}/p.txt"], "does not exist"),
    (["score", "--paired", "{tmp}/p.txt", "{tmp}/p.txt"], "is not a JSON report of t2i score"),
    (["score", "--paired", "{tmp}/p.txt"], "expected 2 arguments"),
    (["bench", "data", "--num", "3"], "integer >= 10, got 3"),
    (["train", "vq", "--data", "{tmp}/nowhere", "--out", "{tmp}/o"], "'{tmp}/nowhere' is neither a folder nor a .tar shard pattern"),
    (["train", "vq", "--preset", "huge", "--data", "{tmp}", "--out", "{tmp}/o"], "VQ preset must be one of"),
    (["train", "vq", "--data", "{tmp}", "--out", "{tmp}/o"], "holds no images"),
    (["train", "ar", "--data", "{tmp}", "--out", "{tmp}/o", "--max-minutes", "-1"], "--max-minutes: expected a number >= 0, got '-1'"),
    (["eval", "vq", "--checkpoint", "{tmp}/nowhere"], "does not exist"),
    (["eval", "vq", "--checkpoint", "{tmp}"], "has no config.json"),
    (["eval", "vq", "--checkpoint", "{tmp}", "--num", "0"], "integer >= 1, got 0"),
    (["fly"], "invalid choice: 'fly'"),
]


@pytest.mark.parametrize("argv, named", BAD)
def test_bad_arguments_give_one_line_exit_2_and_no_file(capsys, tmp_path, argv, named):
    (tmp_path / "p.txt").write_text("a red circle\n")
    (tmp_path / "bad.txt").write_text("a red circle\na red circel\n")
    before = set(tmp_path.rglob("*"))
    code, stdout, stderr = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert code == 2
    assert named.format(tmp=tmp_path) in stderr, stderr
    assert stderr.count("\n") == 1 and "Traceback" not in stderr and stderr.startswith("t2i")
    assert set(tmp_path.rglob("*")) == before


def test_exit_code_of_a_real_process(tmp_path):
    # Through a real process: exit status 2, a one-line message, no file.
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "x.png"
    argv = [sys.executable, "-m", "tools.cli", "render", "a red circle at the moon", "--out", str(out)]
    result = subprocess.run(argv,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    assert result.returncode == 2 and "'moon'" in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_help_shows_no_doubled_percent_signs(capsys):
    """argparse %-formats help strings but prints descriptions as written: a '%%' there reaches the user."""
    from tools.cli import build_parser

    def walk(parser):
        yield parser
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)

    for parser in walk(build_parser()):
        assert "%%" not in parser.format_help(), parser.prog
