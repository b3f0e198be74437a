"""The synthetic scene world of docs/world.md: vocabulary, captions, scenes and rendering."""

from .caption import (
    CaptionError, CountReq, ObjectReq, RelationReq, Requirements, TextReq, category_of, format_caption,
    parse_caption,
)
from .config import max_word_len_for
from .render import render, render_any_size
from .scene import LayoutError, PlacedShape, PlacedWord, SamplingOptions, Scene, caption, layout, sample_scene
from .vocab import CATEGORIES
from .words import HELDOUT_WORDS, TRAIN_WORDS, word_list

__all__ = [
    "CATEGORIES", "CaptionError", "CountReq", "HELDOUT_WORDS", "LayoutError", "ObjectReq", "PlacedShape",
    "PlacedWord", "RelationReq", "Requirements", "SamplingOptions", "Scene", "TRAIN_WORDS", "TextReq", "caption",
    "category_of", "format_caption", "layout", "max_word_len_for", "parse_caption", "render", "render_any_size",
    "sample_scene", "word_list",
]
