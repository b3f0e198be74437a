"""Draw a scene: flat palette colours, no anti-aliasing, so every pixel is a named colour or the background.

Text uses Pillow's scalable default font (it ships with Pillow), drawn without anti-aliasing. Letters are 0.25 S
tall, made smaller when a long word would not fit in 0.8 S, never under 16 px; at 16 px a word that still does
not fit is condensed horizontally.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .scene import PlacedShape, PlacedWord, Scene
from .vocab import BACKGROUNDS, SIZE_FRACTION, colour_rgb

MIN_LETTER_PX = 16  # Tesseract reads blurred text reliably only from about 16 px
LETTER_FRACTION = 0.25
MAX_WORD_FRACTION = 0.8
TEXT_MARGIN_FRACTION = 0.05  # gap between an aligned word and the canvas edge
STROKE = 1  # a one-pixel outline in the same colour: bolder glyphs survive blur and OCR better


def shape_mask(shape: str, side: int) -> np.ndarray:
    """Boolean (side, side) mask of a shape filling its bounding square; the judge's templates use it too."""
    img = Image.new("1", (side, side), 0)
    draw = ImageDraw.Draw(img)
    e = side - 1
    m = e / 2
    if shape == "circle":
        draw.ellipse((0, 0, e, e), fill=1)
    elif shape == "square":
        draw.rectangle((0, 0, e, e), fill=1)
    elif shape == "triangle":
        draw.polygon([(m, 0), (e, e), (0, e)], fill=1)
    elif shape == "diamond":
        draw.polygon([(m, 0), (e, m), (m, e), (0, m)], fill=1)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return np.array(img, dtype=bool)


def shape_box(s: PlacedShape, size: int) -> tuple[int, int, int]:
    """(x0, y0, side) in pixels of a placed shape's bounding square on a canvas of ``size`` px."""
    side = round(SIZE_FRACTION[s.size] * size)
    cx, cy = s.centre
    return round(cx * size - side / 2), round(cy * size - side / 2), side


@lru_cache(maxsize=64)
def _font(letter_px: int) -> ImageFont.FreeTypeFont:
    """The default font at the point size whose capital letters (with the stroke) are ``letter_px`` tall."""
    best = None
    for pt in range(letter_px, 4 * letter_px):
        font = ImageFont.load_default(size=pt)
        _, top, _, bottom = font.getbbox("H", stroke_width=STROKE)
        if bottom - top > letter_px:
            break
        best = font
    return best


def _word_mask(word: str, size: int) -> np.ndarray:
    """Boolean mask of the word's glyphs, cropped to its ink, sized for a canvas of ``size`` px."""
    max_width = int(MAX_WORD_FRACTION * size)
    letter_px = max(MIN_LETTER_PX, round(LETTER_FRACTION * size))

    def draw(px: int) -> Image.Image:
        font = _font(px)
        left, top, right, bottom = font.getbbox(word, stroke_width=STROKE)
        img = Image.new("L", (right - left, bottom - top), 0)
        d = ImageDraw.Draw(img)
        d.fontmode = "1"  # no anti-aliasing: glyph pixels are exactly the text colour
        d.text((-left, -top), word, font=font, fill=255, stroke_width=STROKE, stroke_fill=255)
        return img

    img = draw(letter_px)
    if img.width > max_width and letter_px > MIN_LETTER_PX:
        letter_px = max(MIN_LETTER_PX, int(letter_px * max_width / img.width))
        img = draw(letter_px)
    if img.width > max_width:
        img = img.resize((max_width, img.height), Image.NEAREST)
    mask = np.array(img) > 127
    rows, cols = np.nonzero(mask)
    return mask[rows.min(): rows.max() + 1, cols.min(): cols.max() + 1]


def word_box(w: PlacedWord, size: int) -> tuple[int, int, np.ndarray]:
    """(x0, y0, mask) of a placed word on a canvas of ``size`` px."""
    mask = _word_mask(w.word, size)
    h, wd = mask.shape
    margin = round(TEXT_MARGIN_FRACTION * size)
    x0 = (margin, (size - wd) // 2, size - margin - wd)[w.col]
    y0 = round((w.row + 0.5) * size / 3 - h / 2)
    return x0, y0, mask


def render_any_size(scene: Scene, size: int) -> Image.Image:
    """``render`` at any size: below the 48 px the renderer draws, render at 48 and shrink (box filter), as
    the tiny test models' 16 px images need."""
    return render(scene, size) if size >= 48 else render(scene, 48).resize((size, size), Image.BOX)


def render(scene: Scene, size: int) -> Image.Image:
    """The scene as an RGB image of ``size`` x ``size`` pixels."""
    if not isinstance(size, int) or size < 48:
        raise ValueError(f"size must be an integer >= 48 pixels, got {size!r}")
    canvas = np.empty((size, size, 3), dtype=np.uint8)
    canvas[:] = BACKGROUNDS[scene.background]
    for s in scene.shapes:
        x0, y0, side = shape_box(s, size)
        region = canvas[y0: y0 + side, x0: x0 + side]
        region[shape_mask(s.shape, side)] = colour_rgb(s.colour, scene.background)
    for w in scene.words:
        x0, y0, mask = word_box(w, size)
        h, wd = mask.shape
        canvas[y0: y0 + h, x0: x0 + wd][mask] = colour_rgb(w.colour, scene.background)
    return Image.fromarray(canvas, "RGB")
