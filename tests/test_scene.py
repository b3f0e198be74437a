import random

import numpy as np
import pytest

from tools.judge.detect import Detections, FoundShape, FoundText
from tools.judge.verdict import check
from tools.world import LayoutError, Scene, layout, parse_caption, render, sample_scene
from tools.world.render import MIN_LETTER_PX, word_box
from tools.world.vocab import BACKGROUNDS, COLOURS, SIZE_FRACTION, colour_rgb


@pytest.mark.parametrize("size", [64, 128])
def test_same_seed_same_pixels_and_other_seed_other_pixels(size):
    a = np.asarray(render(sample_scene(7), size))
    b = np.asarray(render(sample_scene(7), size))
    c = np.asarray(render(sample_scene(8), size))
    assert a.shape == (size, size, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_every_pixel_is_a_named_colour_or_the_background():
    for seed in range(100):
        scene = sample_scene(seed)
        pixels = np.asarray(render(scene, 64)).reshape(-1, 3)
        allowed = {BACKGROUNDS[scene.background]} | {colour_rgb(c, scene.background) for c in COLOURS}
        assert {tuple(p) for p in np.unique(pixels, axis=0)} <= allowed


def test_scene_json_round_trip():
    for seed in range(50):
        scene = sample_scene(seed)
        assert Scene.from_dict(scene.to_dict()) == scene


def _as_detections(scene: Scene) -> Detections:
    """What a perfect detector would report for a scene."""
    shapes = tuple(FoundShape(s.shape, s.colour, s.size, *s.centre, iou=1.0) for s in scene.shapes)
    texts = tuple(FoundText(w.word, w.colour, w.row, w.col) for w in scene.words)
    return Detections(scene.background, shapes, texts)


def test_layouts_satisfy_their_own_requirements():
    for seed in range(1000):
        scene = sample_scene(seed)
        verdict = check(scene.requirements, _as_detections(scene))
        assert verdict.passed, (seed, verdict.reasons)


def test_objects_stay_inside_their_cells_with_a_gap():
    for seed in range(300):
        for s in sample_scene(seed).shapes:
            cx, cy = s.centre
            half = SIZE_FRACTION[s.size] / 2
            assert s.col / 3 + 0.01 < cx - half and cx + half < (s.col + 1) / 3 - 0.01
            assert s.row / 3 + 0.01 < cy - half and cy + half < (s.row + 1) / 3 - 0.01


@pytest.mark.parametrize("size", [64, 128, 256])
def test_letters_are_at_least_16px_and_words_fit(size):
    for word in ["IT", "CAT", "MWMW", "WINTER"]:
        scene = layout(parse_caption(f"the word {word} at the left"), random.Random(0))
        x0, y0, mask = word_box(scene.words[0], size)
        assert mask.shape[0] >= MIN_LETTER_PX
        assert 0 <= x0 and x0 + mask.shape[1] <= size and 0 <= y0 and y0 + mask.shape[0] <= size


@pytest.mark.parametrize("text", [
    "a red circle at the top and a blue square at the top",
    "the word CAT at the top and a red circle at the top left",
    "the word CAT at the left and the word DOG at the right",
    "four red circles and four blue circles and a green square and a red square",
])
def test_impossible_layouts_raise_a_clear_error(text):
    with pytest.raises(LayoutError, match="cannot lay out"):
        layout(parse_caption(text), random.Random(0))


def test_render_rejects_a_tiny_canvas():
    with pytest.raises(ValueError, match="size must be an integer >= 48"):
        render(sample_scene(0), 16)
