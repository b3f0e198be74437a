"""Find the shapes and words in an image by classical image analysis (OpenCV), with no learned weights.

1. Background: the named background (white, black, gray) nearest to the border pixels.
2. Colour: each pixel is explained as a mix of one palette colour with the background (what blur makes);
   pixels that are at least half a colour are "solid" in that colour.
3. Shapes: connected components of one colour, classified by their overlap (IoU) with the four shape masks
   the renderer draws, in the component's bounding square. Letters have holes or thin strokes and match none.
4. Words: the foreground that is not a shape, grouped into lines, each read by Tesseract.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from tools.world.render import shape_mask
from tools.world.vocab import BACKGROUNDS, COLOURS, SHAPES, SIZE_THRESHOLD, colour_rgb

from .ocr import read_line

COLOUR_DISTANCE = 50.0  # RGB distance a pixel may lie off the colour-background segment (half the palette gap)
# Shape or letter? Measured on every word of up to 4 letters and 300 scenes at 64 px (sharp, 2x-blurred and
# through the tiny VQ tokenizer): shapes' IoU >= 0.86 sharp or blurred; letters' IoU <= 0.79, and the letters
# that come near it are less convex (solidity <= 0.86). Shapes are convex (>= 0.94 sharp).
MIN_SHAPE_IOU = 0.82
MIN_SHAPE_SOLIDITY = 0.88
MIN_SHAPE_FRACTION, MAX_SHAPE_FRACTION = 0.10, 0.45  # side of a shape's bounding square over the canvas side
# A left-aligned word of the widest kind (0.8 S) leaves gaps of 0.05 S and 0.15 S; a centred one, equal gaps.
ALIGN_TOLERANCE = 0.05


@dataclass(frozen=True)
class FoundShape:
    shape: str
    colour: str
    size: str
    x: float  # centre, as fractions of the canvas side
    y: float
    iou: float

    @property
    def cell(self) -> tuple[int, int]:
        return min(int(self.y * 3), 2), min(int(self.x * 3), 2)

    def describe(self) -> str:
        return f"{self.size} {self.colour} {self.shape} at ({self.x:.2f}, {self.y:.2f})"


@dataclass(frozen=True)
class FoundText:
    text: str | None  # None when the caption asks for no word, so OCR was not run
    colour: str | None
    row: int
    col: int  # 0: left-aligned, 1: centred, 2: right-aligned

    def describe(self) -> str:
        text = "(not read)" if self.text is None else repr(self.text) if self.text else "(unreadable)"
        return f"{text} in {self.colour} at row {self.row}, column {self.col}"


@dataclass(frozen=True)
class Detections:
    background: str
    shapes: tuple[FoundShape, ...]
    texts: tuple[FoundText, ...]


def to_rgb_array(image) -> np.ndarray:
    """(H, W, 3) uint8 from a PIL image or an array; raises ValueError for anything else."""
    if isinstance(image, Image.Image):
        image = np.asarray(image.convert("RGB"))
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        got = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"image must be a PIL image or a uint8 (H, W, 3) array, got {got}")
    if image.shape[0] != image.shape[1]:
        raise ValueError(f"image must be square, got {image.shape[1]}x{image.shape[0]}")
    return image


def _distance(pixels: np.ndarray, rgb) -> np.ndarray:
    return np.linalg.norm(pixels.astype(np.float32) - np.asarray(rgb, np.float32), axis=-1)


def _background(img: np.ndarray) -> str:
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    votes = np.stack([_distance(border, rgb) for rgb in BACKGROUNDS.values()]).argmin(0)
    return list(BACKGROUNDS)[np.bincount(votes, minlength=len(BACKGROUNDS)).argmax()]


def _palette(background: str) -> dict[str, tuple[int, int, int]]:
    bg = BACKGROUNDS[background]
    return {c: colour_rgb(c, background) for c in COLOURS if colour_rgb(c, background) != bg}


def _unmix(img: np.ndarray, background: str, palette: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Explain each pixel as ``bg + alpha * (colour - bg)`` for its best palette colour.

    Blur mixes a colour with the background, so its pixels lie on the segment from one to the other. Returns
    the index of the best colour, its alpha in [0, 1] (how much colour) and the RGB distance left unexplained.
    """
    bg = np.asarray(BACKGROUNDS[background], np.float32)
    offset = img.astype(np.float32) - bg  # (H, W, 3)
    directions = np.asarray(list(palette.values()), np.float32) - bg  # (C, 3)
    alpha = np.einsum("hwc,kc->khw", offset, directions) / (directions**2).sum(1)[:, None, None]
    alpha = alpha.clip(0, 1)
    residual = np.linalg.norm(offset[None] - alpha[..., None] * directions[:, None, None], axis=-1)
    best = residual.argmin(0)
    pick = best[None]
    return best, np.take_along_axis(alpha, pick, 0)[0], np.take_along_axis(residual, pick, 0)[0]


SUPERSAMPLE = 4  # templates are compared at 4x resolution so sub-pixel placement counts


@lru_cache(maxsize=None)
def _fill_and_centroid(shape: str) -> tuple[float, float, float]:
    """Fraction of its bounding square a shape fills, and its centroid (x, y) as fractions of the side."""
    mask = shape_mask(shape, 256)
    ys, xs = np.nonzero(mask)
    return mask.mean(), (xs.mean() + 0.5) / 256, (ys.mean() + 0.5) / 256


def _classify(component: np.ndarray) -> tuple[str, float, float]:
    """Best shape for a component mask cropped to its bounding box: (shape, IoU, side in pixels).

    Each shape's template gets the component's area and centroid (not its bounding box: blur rounds off the
    tips of a small diamond or triangle, which shrinks the box but hardly the area).
    """
    s = SUPERSAMPLE
    big = np.kron(component, np.ones((s, s), dtype=bool))
    ys, xs = np.nonzero(big)
    cx, cy, area = xs.mean() + 0.5, ys.mean() + 0.5, big.sum()
    best = ("", -1.0, 0.0)
    for shape in SHAPES:
        fill, fx, fy = _fill_and_centroid(shape)
        side = max(2, round(np.sqrt(area / fill)))
        x0, y0 = round(cx - fx * side), round(cy - fy * side)
        # Paste both on a canvas that holds them, then compare.
        left, top = min(0, x0), min(0, y0)
        width = max(big.shape[1], x0 + side) - left
        height = max(big.shape[0], y0 + side) - top
        a = np.zeros((height, width), dtype=bool)
        b = np.zeros((height, width), dtype=bool)
        a[-top: -top + big.shape[0], -left: -left + big.shape[1]] = big
        b[y0 - top: y0 - top + side, x0 - left: x0 - left + side] = shape_mask(shape, side)
        iou = (a & b).sum() / (a | b).sum()
        if iou > best[1]:
            best = (shape, float(iou), side / s)
    return best


def _solidity(component: np.ndarray) -> float:
    """Area over the area of the convex hull (both in pixels)."""
    points = cv2.findNonZero(component.astype(np.uint8))
    hull = np.zeros(component.shape, np.uint8)
    cv2.fillPoly(hull, [cv2.convexHull(points)], 1)
    return float(component.sum() / max(hull.sum(), 1))


def _lines(mask: np.ndarray, gap: int) -> list[np.ndarray]:
    """Group ink into text lines: pieces less than ``gap`` px apart horizontally join one line."""
    joined = cv2.dilate(mask.astype(np.uint8), np.ones((1, 2 * gap + 1), np.uint8))
    n, labels = cv2.connectedComponents(joined, connectivity=8)
    return [(labels == i) & mask for i in range(1, n)]


def detect(image, read_text: bool = True) -> Detections:
    """All shapes and text lines in ``image`` (PIL or uint8 (H, W, 3)); text is read only if ``read_text``."""
    img = to_rgb_array(image)
    size = img.shape[0]
    background = _background(img)
    palette = _palette(background)
    names = list(palette)
    nearest, alpha, residual = _unmix(img, background, palette)
    # Solid: at least half a palette colour. Keeps a blurred shape its size, drops the faint rim around it.
    solid = (alpha >= 0.5) & (residual < COLOUR_DISTANCE)

    shapes, shape_pixels = [], np.zeros(solid.shape, dtype=bool)
    min_side, max_side = MIN_SHAPE_FRACTION * size, MAX_SHAPE_FRACTION * size
    for k, colour in enumerate(names):
        mask = (solid & (nearest == k)).astype(np.uint8)
        n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            if not min_side <= max(w, h) <= max_side:
                continue
            component = labels[y: y + h, x: x + w] == i
            shape, iou, side = _classify(component)
            if iou < MIN_SHAPE_IOU or _solidity(component) < MIN_SHAPE_SOLIDITY:
                continue
            size_name = "small" if side / size < SIZE_THRESHOLD else "large"
            shapes.append(FoundShape(shape, colour, size_name, (x + w / 2) / size, (y + h / 2) / size, iou))
            shape_pixels[y: y + h, x: x + w] |= component

    # Colour bleeding off a shape is not text: take the shapes, grown by a pixel, out before reading.
    grown = cv2.dilate(shape_pixels.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    texts = []
    min_height = max(6, int(0.06 * size))
    for line in _lines(solid & ~grown, gap=max(3, round(0.08 * size))):
        ys, xs = np.nonzero(line)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        if y1 - y0 < min_height or line.sum() < 2 * min_height:
            continue
        colour = names[np.bincount(nearest[line], minlength=len(names)).argmax()]
        text = None
        if read_text:
            # OCR sees the colour's alpha (soft edges upscale into clean glyphs), near this line only.
            near = cv2.dilate(line.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~grown
            k = names.index(colour)
            strength = np.where(near & (nearest == k), alpha, 0.0)
            text = read_line(strength[max(y0 - 1, 0): y1 + 1, max(x0 - 1, 0): x1 + 1])
        row = min(int((y0 + y1) / 2 / size * 3), 2)
        gap_left, gap_right = x0, size - x1
        col = 1 if abs(gap_left - gap_right) <= ALIGN_TOLERANCE * size else (0 if gap_left < gap_right else 2)
        texts.append(FoundText(text, colour, row, col))
    return Detections(background, tuple(shapes), tuple(texts))
