import pytest

from tools.world import (
    CATEGORIES, CaptionError, CountReq, ObjectReq, RelationReq, Requirements, SamplingOptions, TextReq, caption,
    category_of, parse_caption, sample_scene,
)


def test_round_trip_over_1000_seeded_scenes():
    seen = set()
    for seed in range(1000):
        scene = sample_scene(seed)
        assert parse_caption(caption(scene)) == scene.requirements
        seen.add(scene.category)
    assert seen == set(CATEGORIES)


@pytest.mark.parametrize("category", CATEGORIES)
def test_sampled_category_is_the_one_asked_for(category):
    for seed in range(50):
        assert sample_scene(seed, category).category == category


def test_parse_examples_from_world_md():
    assert parse_caption("a red circle") == Requirements((ObjectReq("red", "circle"),))
    assert parse_caption("a large blue square at the top left") == Requirements(
        (ObjectReq("blue", "square", "large", "top left"),))
    assert parse_caption("three green triangles") == Requirements((CountReq(3, "green", "triangle"),))
    assert parse_caption("a yellow diamond to the left of a purple circle") == Requirements(
        (RelationReq(ObjectReq("yellow", "diamond"), "to the left of", ObjectReq("purple", "circle")),))
    req = parse_caption("the word CAT in blue at the bottom and a small red square at the top right")
    assert req.clauses == (TextReq("CAT", "blue", "bottom"), ObjectReq("red", "square", "small", "top right"))
    assert parse_caption("the word HELLO on a black background") == Requirements((TextReq("HELLO"),), "black")


def test_normalisation_is_documented_and_canonical():
    # Case-insensitive grammar words, "an", and the word upper-cased.
    assert parse_caption("An Orange circle") == parse_caption("a orange circle")
    assert parse_caption("the word cat").clauses == (TextReq("CAT"),)


@pytest.mark.parametrize("text, category", [
    ("a red circle", "single_object"),
    ("a red circle at the top", "position"),
    ("a red circle and a red square", "two_objects"),
    ("a red circle and a blue circle", "two_objects"),
    ("a red circle and a blue square", "colour_attribution"),
    ("a red circle above a blue square", "relation"),
    ("four red circles", "counting"),
    ("the word CAT", "text"),
    ("the word CAT at the top and a red circle", "text_layout"),
    ("a red circle and a blue square and a green diamond", "other"),
])
def test_category_of(text, category):
    assert category_of(parse_caption(text)) == category


MALFORMED = [
    ("", "empty"),
    ("   ", "empty"),
    ("a blu circle", "'blu'"),
    ("a red circl", "'circl'"),
    ("a red", "ended too early"),
    ("red circle", "'red'"),
    ("a medium red circle", "'medium'"),
    ("a red circle at top", "'top'"),
    ("a red circle at the middle", "'middle'"),
    ("a red circle at the", "ended too early"),
    ("five red circles", "'five'"),
    ("two red circle", "'circle'"),
    ("one red circle", "'one'"),
    ("a red circle next to a blue square", "'next'"),
    ("a red circle to the left a blue square", "'a'"),
    ("a red circle and", "ended too early"),
    ("a red circle, a blue square", "'circle,'"),
    ("a red circle or a blue square", "'or'"),
    ("the word", "ended too early"),
    ("the word C", "'C'"),
    ("the word TOOLONGWORD", "'TOOLONGWORD'"),
    ("the word CAT5", "'CAT5'"),
    ("the word ÉTÉ", "'ÉTÉ'"),
    ("the word CAT in navy", "'navy'"),
    ("the words CAT", "'words'"),
    ("a red circle on a white background", "'white'"),
    ("a red circle on a black background and a blue square", "'and'"),
    ("a red circle on a black", "ended too early"),
]


@pytest.mark.parametrize("text, named", MALFORMED)
def test_malformed_captions_name_the_word_and_what_is_allowed(text, named):
    with pytest.raises(CaptionError) as info:
        parse_caption(text)
    message = str(info.value)
    assert named in message
    assert "\n" not in message
    if "empty" not in named:
        assert "expected" in message


def test_error_lists_the_allowed_words():
    with pytest.raises(CaptionError, match="'circle', 'square', 'triangle', 'diamond'"):
        parse_caption("a red blob")


def test_heldout_split_uses_only_heldout_words():
    from tools.world import HELDOUT_WORDS, TRAIN_WORDS

    assert not set(TRAIN_WORDS) & set(HELDOUT_WORDS)
    opts = SamplingOptions(words="heldout", max_word_len=4)
    words = {w.word for s in range(200) for w in sample_scene(s, "text", opts).words}
    assert words <= set(HELDOUT_WORDS) and all(len(w) <= 4 for w in words)


def test_the_grammar_in_docs_is_the_one_the_parser_reads(capsys):
    import re
    from pathlib import Path

    from tools.world.grammar import grammar_text

    from .test_cli import run

    doc = (Path(__file__).resolve().parents[1] / "docs" / "world.md").read_text()
    assert grammar_text() in doc  # docs/world.md shows the grammar built from the vocabulary
    code, stdout, _ = run(capsys, "prompts", "--grammar")
    assert code == 0 and stdout.strip() == grammar_text(4)  # the tiny preset's words: up to 4 letters
    examples = re.findall(r"`((?:a|the|three) [^`]+)`", doc.split("Examples:")[1].split("\n\n")[0])
    assert len(examples) == 6
    for text in examples:
        parse_caption(text)
