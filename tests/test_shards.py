import tarfile

import numpy as np
import pytest

import tools.shards as shards
from tools.shards import load_shards, make_shards, read_manifest, scene_seed
from tools.world import Scene, SamplingOptions, render, sample_scene
from tools.world.config import WorldConfig

TINY = WorldConfig.from_preset("tiny")


def test_round_trip_gives_back_the_rendered_scenes(tmp_path):
    make_shards(tmp_path, 20, TINY, seed=3, shard_size=8, progress=False)
    manifest = read_manifest(tmp_path)
    assert manifest["shards"] == ["train-00000.tar", "train-00001.tar", "train-00002.tar"]
    samples = list(load_shards(tmp_path))
    assert [s["key"] for s in samples] == [f"{i:08d}" for i in range(20)]
    opts = SamplingOptions(words="train", max_word_len=4)
    for i, s in enumerate(samples):
        scene = sample_scene(scene_seed(3, "train", i), "mixed", opts)
        assert Scene.from_dict(s["scene"]) == scene
        assert s["caption"] == s["scene"]["caption"]
        assert s["image"].shape == (3, 64, 64) and s["image"].dtype.is_floating_point
        expected = np.asarray(render(scene, 64)).transpose(2, 0, 1) / 255
        assert np.allclose(s["image"].numpy(), expected)


def test_same_seed_same_bytes(tmp_path):
    make_shards(tmp_path / "a", 10, TINY, seed=1, progress=False)
    make_shards(tmp_path / "b", 10, TINY, seed=1, progress=False)
    make_shards(tmp_path / "c", 10, TINY, seed=2, progress=False)
    a, b, c = ((tmp_path / d / "train-00000.tar").read_bytes() for d in "abc")
    assert a == b and a != c


def test_heldout_split_has_heldout_words_only(tmp_path):
    from tools.world import HELDOUT_WORDS, TRAIN_WORDS

    make_shards(tmp_path, 200, TINY, split="heldout", progress=False)
    words = {w["word"] for s in load_shards(tmp_path, "heldout") for w in s["scene"]["words"]}
    assert words and words <= set(HELDOUT_WORDS) and not words & set(TRAIN_WORDS)


def test_shuffled_stream_is_seeded_and_complete(tmp_path):
    make_shards(tmp_path, 30, TINY, shard_size=10, progress=False)
    keys = lambda seed: [s["key"] for s in load_shards(tmp_path, shuffle_buffer=10, seed=seed)]
    assert keys(0) == keys(0) and keys(0) != keys(1)
    assert sorted(keys(0)) == [f"{i:08d}" for i in range(30)]


def test_a_killed_run_leaves_nothing_a_reader_accepts(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = shards.render

    def dying_render(scene, size):
        calls["n"] += 1
        if calls["n"] == 13:
            raise KeyboardInterrupt  # stands in for a kill in the middle of the second shard
        return real(scene, size)

    monkeypatch.setattr(shards, "render", dying_render)
    with pytest.raises(KeyboardInterrupt):
        make_shards(tmp_path, 30, TINY, shard_size=10, progress=False)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["train-00000.tar"]  # the complete first shard only: no partial shard, no temp file
    with tarfile.open(tmp_path / "train-00000.tar") as tar:
        assert len(tar.getnames()) == 30  # 10 samples x (png, txt, json)
    with pytest.raises(FileNotFoundError, match="train.json is missing"):
        load_shards(tmp_path)


def test_category_weights_change_the_mix_and_none_keeps_the_old_scenes(tmp_path):
    from tools.world import CATEGORIES
    from tools.world.caption import category_of

    def categories(folder):
        return [category_of(Scene.from_dict(s["scene"]).requirements) for s in load_shards(folder)]

    make_shards(tmp_path / "plain", 200, TINY, seed=5, shard_size=200, progress=False)
    make_shards(tmp_path / "even", 200, TINY, seed=5, shard_size=200, progress=False, category_weights={})
    make_shards(tmp_path / "text", 200, TINY, seed=5, shard_size=200, progress=False,
                category_weights={"text": 3, "text_layout": 3})
    make_shards(tmp_path / "only", 50, TINY, seed=5, shard_size=50, progress=False,
                category_weights={c: 0 for c in CATEGORIES if c != "relation"})
    plain = categories(tmp_path / "plain")
    text = categories(tmp_path / "text")
    # No weights: the scenes of data sets made before the option existed, scene for scene.
    opts = SamplingOptions(words="train", max_word_len=TINY.max_word_len)
    assert plain == [category_of(sample_scene(scene_seed(5, "train", i), "mixed", opts).requirements)
                     for i in range(200)]
    assert "category_weights" not in read_manifest(tmp_path / "plain")
    assert read_manifest(tmp_path / "text")["category_weights"]["text"] == 3.0
    # Half the scenes are text ones at weights 3 + 3 of 12 (a quarter without); 200 draws keep it within +-0.1.
    share = lambda cats: sum(c in ("text", "text_layout") for c in cats) / len(cats)
    assert 0.4 <= share(text) <= 0.6 and 0.15 <= share(plain) <= 0.35
    assert 0.15 <= share(categories(tmp_path / "even")) <= 0.35
    assert set(categories(tmp_path / "only")) == {"relation"}
    with pytest.raises(ValueError, match="unknown categories \\['txt'\\]"):
        make_shards(tmp_path / "bad", 5, TINY, category_weights={"txt": 1})
    with pytest.raises(ValueError, match="category_weights must be 8 weights >= 0"):
        SamplingOptions(category_weights=(1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0))


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        make_shards(tmp_path, 1, TINY, split="test")
    with pytest.raises(ValueError, match="num must be a positive integer, got 0"):
        make_shards(tmp_path, 0, TINY)
    with pytest.raises(ValueError, match="unknown WorldConfig keys"):
        WorldConfig.from_dict({"image_size": 64, "colours": 3})
    with pytest.raises(ValueError, match="preset must be one of"):
        WorldConfig.from_preset("huge")
