import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from tools.judge.report import summarize, wilson_interval
from tools.judge.validate import mismatch
from tools.judge.verdict import edit_distance, score
from tools.world import CATEGORIES, format_caption, render, sample_scene, word_list

from .conftest import needs_tesseract

RED, BLUE, GREEN = (220, 30, 30), (30, 70, 230), (20, 160, 50)


def _canvas(size=64, bg="white"):
    image = Image.new("RGB", (size, size), bg)
    return image, ImageDraw.Draw(image)


def test_hand_drawn_red_circle_top_left():
    image, draw = _canvas()
    draw.ellipse((3, 3, 20, 20), fill=RED)  # drawn by hand, not by the renderer
    assert score(image, "a red circle").passed
    assert score(image, "a red circle at the top left").passed
    assert score(image, "a large red circle at the top left").passed
    for wrong in ["a blue circle", "a red square", "a red circle at the bottom", "a small red circle",
                  "a red circle on a black background", "two red circles"]:
        verdict = score(image, wrong)
        assert not verdict.passed and verdict.reasons, wrong


def test_hand_drawn_counting_and_relation():
    image, draw = _canvas(96)
    for x in (6, 38, 70):
        draw.polygon([(x + 9, 40), (x + 18, 56), (x, 56)], fill=GREEN)
    draw.rectangle((40, 75, 55, 90), fill=BLUE)
    assert score(image, "three green triangles").passed
    assert not score(image, "two green triangles").passed
    assert not score(image, "four green triangles").passed
    assert score(image, "a green triangle above a blue square").passed
    assert not score(image, "a green triangle below a blue square").passed


def test_colour_binding_swapped_fails():
    image, draw = _canvas()
    draw.ellipse((4, 24, 18, 38), fill=RED)
    draw.rectangle((44, 24, 58, 38), fill=BLUE)
    assert score(image, "a red circle and a blue square").passed
    verdict = score(image, "a blue circle and a red square")
    assert not verdict.passed and "expected a blue circle" in verdict.reasons[0]


def test_each_clause_needs_its_own_object():
    image, draw = _canvas()
    draw.ellipse((4, 24, 18, 38), fill=RED)
    assert not score(image, "a red circle and a red circle").passed


def test_blank_image_fails_everything():
    image, _ = _canvas()
    for category in CATEGORIES:
        assert not score(image, format_caption(sample_scene(1, category).requirements)).passed


@needs_tesseract
def test_hand_drawn_word():
    image, draw = _canvas(128)
    font = ImageFont.load_default(size=40)
    draw.text((14, 70), "CAT", font=font, fill=BLUE)
    verdict = score(image, "the word CAT in blue")
    assert verdict.passed, verdict.reasons
    assert verdict.text_reads[0].read == "CAT"
    assert not score(image, "the word DOG").passed
    assert not score(image, "the word CAT in red").passed
    assert not score(image, "the word CAT at the top").passed


@needs_tesseract
@pytest.mark.parametrize("category", CATEGORIES)
def test_ground_truth_passes_and_mismatch_fails(category):
    # OCR of 16 px letters misreads about 1 word in 100 (t2i score --validate), so allow one miss in six.
    words = word_list("train", 4)
    own_passed, wrong_passed = [], []
    for seed in range(6):
        scene = sample_scene(seed, category)
        image = render(scene, 64)
        own = format_caption(scene.requirements)
        own_passed.append(score(image, own).passed)
        wrong = format_caption(mismatch(scene.requirements, random.Random(seed), words))
        wrong_passed.append(score(image, wrong).passed)
    assert sum(own_passed) >= 5, own_passed
    assert not any(wrong_passed), wrong_passed


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="square"):
        score(np.zeros((64, 32, 3), np.uint8), "a red circle")
    with pytest.raises(ValueError, match="uint8"):
        score(np.zeros((64, 64), np.float32), "a red circle")


def test_report_numbers():
    assert edit_distance("CAT", "CART") == 1 and edit_distance("", "DOG") == 3 and edit_distance("AB", "BA") == 2
    lo, hi = wilson_interval(45, 50)
    assert 0.78 < lo < 0.79 and 0.95 < hi < 0.96  # Wilson interval of 45/50: [0.786, 0.957]
    image, draw = _canvas()
    draw.ellipse((3, 3, 20, 20), fill=RED)
    verdicts = [score(image, "a red circle"), score(image, "a blue circle"), score(image, "four red circles")]
    report = summarize(verdicts, num_prompts=3)
    assert report["categories"]["single_object"]["pass_rate"] == 0.5
    assert report["categories"]["counting"]["pass_rate"] == 0.0
    assert report["overall"] == 0.25 and report["num_images"] == 3 and report["text"] is None
