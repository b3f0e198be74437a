"""The closed vocabulary of the scene world (docs/world.md): colours, shapes, sizes, positions, relations.

Everything the generator draws and the judge looks for is named here once.
"""

from __future__ import annotations

# Fixed sRGB values, chosen so that every pair (backgrounds included) is at least ~100 apart in RGB distance;
# the judge classifies a pixel by its nearest palette colour, so this distance is its margin for blur.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "orange": (250, 130, 0),
    "yellow": (255, 235, 0),
    "green": (20, 160, 50),
    "blue": (30, 70, 230),
    "purple": (140, 30, 190),
    "pink": (255, 120, 200),
    "black": (0, 0, 0),
}
WHITE = (255, 255, 255)
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"white": WHITE, "black": (0, 0, 0), "gray": (128, 128, 128)}
NAMED_BACKGROUNDS = ("black", "gray")  # the ones a caption can name; white is the default

SHAPES = ("circle", "square", "triangle", "diamond")
SIZES = ("small", "large")
# Side of the shape's bounding square as a fraction of the canvas. the world spec says "about 0.32 S" for large;
# 0.29 S keeps a gap of 0.04 S between two large shapes in neighbouring cells (cells are S/3 wide), which
# survives a 2x blur at 64 px, where 0.02 S did not (the judge saw two touching squares as one blob).
SIZE_FRACTION = {"small": 0.18, "large": 0.29}
SIZE_THRESHOLD = 0.24  # the judge's small/large boundary, halfway between the two

# The 3x3 grid, row-major. A position names a cell (row, column).
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)
CELL = {name: divmod(i, 3) for i, name in enumerate(POSITIONS)}
POSITION_OF_CELL = {cell: name for name, cell in CELL.items()}

RELATIONS = ("to the left of", "to the right of", "above", "below")
COUNT_WORDS = {"two": 2, "three": 3, "four": 4}
NUMBER_WORD = {n: w for w, n in COUNT_WORDS.items()}

CATEGORIES = (
    "single_object", "position", "two_objects", "relation",
    "counting", "colour_attribution", "text", "text_layout",
)

WORD_MIN_LEN, WORD_MAX_LEN = 2, 6


def colour_rgb(colour: str, background: str) -> tuple[int, int, int]:
    """The sRGB value a colour name is drawn with: black is drawn white on a black background."""
    if colour == "black" and background == "black":
        return WHITE
    return COLOURS[colour]
