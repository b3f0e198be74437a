import json

import pytest

from tools.judge.paired import paired_difference

from .test_cli import run


def report(passed_by_prompt, categories, per_prompt=1):
    """A minimal ``t2i score`` report: prompt i is in categories[i] and its images passed as given."""
    images = [{"image": f"{i:03d}_{k}.png", "prompt": f"prompt {i}", "category": categories[i], "passed": bool(p)}
              for i, passed in enumerate(passed_by_prompt) for k, p in enumerate(passed)]
    assert all(len(p) == per_prompt for p in passed_by_prompt)
    return {"num_prompts": len(passed_by_prompt), "images": images}


CATEGORIES = ["single_object"] * 20 + ["counting"] * 20


def test_identical_reports_differ_by_exactly_zero():
    a = report([[i % 3 == 0] for i in range(40)], CATEGORIES)
    result = paired_difference(a, a, samples=500)
    assert result["overall"]["b_minus_a"] == 0 and result["overall"]["ci95"] == [0, 0]
    assert result["categories"]["counting"]["ci95"] == [0, 0]


def test_a_clear_improvement_has_an_interval_above_zero_and_the_rates_match_the_reports():
    a = report([[i % 4 == 0] for i in range(40)], CATEGORIES)  # 5 of 20 pass in each category
    b = report([[i % 4 != 3] for i in range(40)], CATEGORIES)  # 15 of 20
    result = paired_difference(a, b, samples=2000)
    assert result["categories"]["single_object"]["a"] == 0.25 and result["categories"]["single_object"]["b"] == 0.75
    assert result["overall"]["b_minus_a"] == 0.5 and result["overall"]["ci95"][0] > 0
    # Swapping the reports mirrors the difference.
    back = paired_difference(b, a, samples=2000)
    assert back["overall"]["b_minus_a"] == -0.5 and back["overall"]["ci95"][1] < 0


def test_a_noisy_tie_has_an_interval_that_straddles_zero():
    a = report([[i % 2 == 0] for i in range(40)], CATEGORIES)
    b = report([[i % 2 == 1] for i in range(40)], CATEGORIES)  # same rates, other prompts
    lo, hi = paired_difference(a, b, samples=2000)["overall"]["ci95"]
    assert lo < 0 < hi


def test_images_of_one_prompt_are_averaged():
    a = report([[True, False]] * 4, ["text"] * 4, per_prompt=2)
    b = report([[True, True]] * 4, ["text"] * 4, per_prompt=2)
    assert paired_difference(a, b, samples=100)["categories"]["text"]["b_minus_a"] == 0.5


def test_reports_on_other_prompts_or_without_verdicts_are_refused():
    a = report([[True]] * 3, ["text"] * 3)
    b = report([[True]] * 3, ["text"] * 3)
    b["images"][1]["prompt"] = "another prompt"
    with pytest.raises(ValueError, match="differ at prompt 2"):
        paired_difference(a, b)
    with pytest.raises(ValueError, match="no per-image verdicts"):
        paired_difference(a, {"num_prompts": 3})


def test_cli_paired_writes_the_comparison(capsys, tmp_path):
    a = report([[i % 4 == 0] for i in range(40)], CATEGORIES)
    b = report([[i % 4 != 3] for i in range(40)], CATEGORIES)
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    code, stdout, _ = run(capsys, "score", "--paired", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                          "--out", str(tmp_path / "paired.json"))
    assert code == 0
    printed = json.loads(stdout)
    assert printed["overall"]["b_minus_a"] == 0.5 and printed["b"].endswith("b.json")
    assert json.loads((tmp_path / "paired.json").read_text()) == printed


def test_cli_paired_refuses_a_report_without_verdicts(capsys, tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"num_prompts": 1, "overall": 0.5}))
    code, _, stderr = run(capsys, "score", "--paired", str(tmp_path / "a.json"), str(tmp_path / "a.json"))
    assert code == 2 and "no per-image verdicts" in stderr and stderr.count("\n") == 1
