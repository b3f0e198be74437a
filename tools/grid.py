"""The one image-grid builder: ``t2i generate``'s grid of several images, the comparison's modes side by side,
the tokenizer's and the refiner's evaluation grids, and the judge's grid of failures all use it."""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import Image, ImageDraw


def image_grid(images: list[Image.Image], columns: int | None = None, *, tile: int | None = None, gap: int = 2,
               margin: tuple[int, int, int, int] = (0, 0, 0, 0), below: int = 0,
               background: tuple[int, int, int] | str = (200, 200, 200),
               before_row: Callable[[ImageDraw.ImageDraw, int, int], None] | None = None,
               after_tile: Callable[[ImageDraw.ImageDraw, int, tuple[int, int]], None] | None = None) -> Image.Image:
    """Images in rows of ``columns`` (default: as square as possible), ``gap`` pixels apart.

    Each image is resized to ``tile`` x ``tile`` when given (nearest neighbour, so pixels stay sharp; else all
    must have one size); ``margin`` (left, top, right, bottom) surrounds the tiles and ``below`` leaves room under
    each for text. ``before_row(draw, row, y)`` draws before a row's tiles are pasted (labels beside them, which
    the tiles then cover where they meet), ``after_tile(draw, index, (x, y))`` after each tile (frames,
    captions).
    """
    if not images:
        raise ValueError("image_grid needs at least one image")
    w, h = (tile, tile) if tile else images[0].size
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    left, top, right, bottom = margin
    size = (left + columns * (w + gap) - gap + right, top + rows * (h + below + gap) - gap + bottom)
    grid = Image.new("RGB", size, background)
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        row, col = divmod(i, columns)
        x, y = left + col * (w + gap), top + row * (h + below + gap)
        if col == 0 and before_row is not None:
            before_row(draw, row, y)
        grid.paste(image.resize((tile, tile), Image.NEAREST) if tile else image, (x, y))
        if after_tile is not None:
            after_tile(draw, i, (x, y))
    return grid
