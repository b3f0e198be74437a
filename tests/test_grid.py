"""The one image-grid builder, in the layouts its callers use."""

from PIL import Image

from tools.grid import image_grid


def tiles(n: int, size: int = 8) -> list[Image.Image]:
    return [Image.new("RGB", (size, size), (10 * i, 0, 0)) for i in range(n)]


def test_plain_grid_is_as_square_as_possible_with_gaps_between():
    grid = image_grid(tiles(5))
    assert grid.size == (3 * 8 + 2 * 2, 2 * 8 + 2)  # 3 columns, 2 rows, 2 px apart, none around
    assert grid.getpixel((10, 0)) == (10, 0, 0) and grid.getpixel((8, 0)) == (200, 200, 200)


def test_margins_room_below_resizing_and_drawing_order():
    labels, captions = [], []

    def label(draw, row, y):
        labels.append((row, y))
        draw.rectangle((0, y, 40, y + 3), fill="blue")  # runs under the row's first tile, which covers it

    grid = image_grid(tiles(3, 4), 2, tile=8, gap=4, margin=(30, 20, 4, 4), below=10, background="white",
                      before_row=label, after_tile=lambda draw, i, at: captions.append((i, at)))
    assert grid.size == (30 + 2 * 8 + 4 + 4, 20 + 2 * (8 + 10) + 4 + 4)
    assert labels == [(0, 20), (1, 42)] and captions == [(0, (30, 20)), (1, (42, 20)), (2, (30, 42))]
    assert grid.getpixel((30, 20)) == (0, 0, 0) and grid.getpixel((29, 20)) == (0, 0, 255)
    assert grid.getpixel((38, 20)) == (0, 0, 255)  # between the tiles the label shows
