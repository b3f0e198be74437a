"""Tile images into one PNG-ready grid (for several images of one prompt)."""

from __future__ import annotations

import math

from PIL import Image


def image_grid(images: list[Image.Image], columns: int | None = None, pad: int = 2,
               background: tuple[int, int, int] = (200, 200, 200)) -> Image.Image:
    """Images of one size in rows of ``columns`` (default: as square as possible), ``pad`` pixels apart."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    w, h = images[0].size
    columns = columns or math.ceil(math.sqrt(len(images)))
    rows = math.ceil(len(images) / columns)
    grid = Image.new("RGB", (columns * (w + pad) - pad, rows * (h + pad) - pad), background)
    for i, image in enumerate(images):
        grid.paste(image, ((i % columns) * (w + pad), (i // columns) * (h + pad)))
    return grid
