"""The research probes of docs/recipe.md run on a tiny pipeline and measure what they say."""

import numpy as np

from tools.code_error_probe import REGIONS, probe, region_of_codes
from tools.world.scene import PlacedShape, PlacedWord, Requirements, Scene


def test_region_of_codes_marks_ink_its_neighbours_and_the_rest():
    scene = Scene(requirements=Requirements((), "white"), shapes=(),
                  words=(PlacedWord("CAT", "blue", 2, 1),))
    regions = region_of_codes(scene, 64, 16)
    word, near, background = (REGIONS.index(r) for r in ("word", "near", "background"))
    rows = np.nonzero((regions == word).any(axis=1))[0]
    assert rows.min() >= 10 and rows.max() <= 15  # the bottom third of the image, and only there
    assert (regions == near).any() and (regions[:8] == background).all()
    assert not (regions == REGIONS.index("shape")).any()


def test_region_of_codes_finds_a_shape():
    shape = PlacedShape("square", "red", "large", 1, 1)
    scene = Scene(requirements=Requirements((), "white"), shapes=(shape,), words=())
    regions = region_of_codes(scene, 64, 16)
    assert regions[8, 8] == REGIONS.index("shape") and regions[0, 0] == REGIONS.index("background")


def test_probe_reports_probabilities_per_region(pipe):
    report = probe(pipe, scenes=3, category="text", words="train", seed=0, batch_size=2)
    assert 0 <= report["far_background_codes_as_on_a_blank_image"] <= 1
    for r, stats in report["regions"].items():
        assert r in REGIONS and stats["codes"] > 0
        assert 0 <= stats["mean_p_plain"] <= 1 and 0 <= stats["mean_top1_guided"] <= 1
        assert 0 <= stats["expected_wrong_codes_per_scene_guided"] <= stats["codes_per_scene"]
    # a random decoder spreads its probability over the 32 codes: far from what a trained one gives
    assert report["regions"]["word"]["mean_p_plain"] < 0.5


def test_frozen_group_norm_with_an_images_own_statistics_is_the_usual_layer():
    import torch

    from tools.gn_probe import FrozenGroupNorm
    from vq.config import VQConfig
    from vq.model import VQModel

    torch.manual_seed(0)
    vq = VQModel(VQConfig(image_size=16, base_channels=8, channel_mult=(1, 2, 2), latent_dim=8, codebook_size=32,
                          codebook_dim=4, kmeans_init=False)).eval()
    patch = FrozenGroupNorm(vq)
    x, other = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        usual = vq.encoder(x)
        patch.mode = "record"
        vq.encoder(x)
        patch.mode = "frozen"
        assert torch.allclose(vq.encoder(x), usual, atol=1e-5)
        patch.mode = "record"
        vq.encoder(other)
        patch.mode = "frozen"
        assert not torch.allclose(vq.encoder(x), usual, atol=1e-3)  # another image's statistics change it


def test_rerank_probe_scores_colour_swaps_and_picks_by_each_rule(pipe):
    from tools.rerank_probe import probe as rerank, summary

    pipe.set_progress_bar_config(disable=True)
    rows = rerank(pipe, candidates=2, per_category=2, seed=0, batch_prompts=2, category="colour_attribution")
    assert len(rows) == 2 and all(len(r["swapped_nats"]) == 2 for r in rows)
    assert all(r["swapped_nats"] != r["cond_nats"] for r in rows)  # another caption, another likelihood
    # Each rule picks the candidate its score says: here the contrast picks candidate 1, plain likelihood 0.
    fake = [{"category": "colour_attribution", "cond_nats": [-10.0, -11.0], "null_nats": [-12.0, -12.0],
             "swapped_nats": [-9.0, -20.0], "passed": [False, True]}]
    rates = summary(fake)
    assert rates["max log p(codes|caption) - log p(codes|colours swapped)"]["overall"] == 1.0
    assert rates["max log p(codes|caption) - 0.0 log p(codes|null)"]["overall"] == 0.0
