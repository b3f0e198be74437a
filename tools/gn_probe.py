"""A probe for section 14 of docs/recipe.md: is a GroupNorm tokenizer's non-locality its global statistics?

    python -m tools.gn_probe --vq checkpoints/tiny/vq --scenes 40

Encodes fresh scenes (single object, position, two objects and text in turn) twice: as they are, and with every
GroupNorm's mean and variance frozen to those it computes on the plain background image. Prints, for each, the
fraction of background codes not next to any ink that equal the code of the same cell in the plain image.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image

from ar_model.pipeline_utils import pil_to_pixels
from tools.code_error_probe import REGIONS, region_of_codes
from tools.shards import scene_seed
from tools.world import render_any_size, sample_scene
from tools.world.config import max_word_len_for
from tools.world.render import BACKGROUNDS
from tools.world.scene import SamplingOptions
from vq import VQModel

CATEGORIES = ("single_object", "position", "two_objects", "text")


class FrozenGroupNorm:
    """Patches a model's GroupNorm layers: ``record`` keeps each layer's statistics of the next input, ``frozen``
    normalises with the recorded ones, ``off`` is the usual layer."""

    def __init__(self, model: torch.nn.Module):
        self.mode, self.stats = "off", {}
        for layer in model.modules():
            if isinstance(layer, torch.nn.GroupNorm):
                layer.forward = self._forward(layer, layer.forward)

    def _forward(self, layer: torch.nn.GroupNorm, usual):
        def forward(x: torch.Tensor) -> torch.Tensor:
            if self.mode == "off":
                return usual(x)
            groups = x.reshape(x.shape[0], layer.num_groups, -1)
            if self.mode == "record":
                self.stats[id(layer)] = (groups.mean(-1, keepdim=True), groups.var(-1, unbiased=False, keepdim=True))
                return usual(x)
            mean, var = self.stats[id(layer)]
            x = ((groups - mean) / torch.sqrt(var + layer.eps)).reshape(x.shape)
            return x * layer.weight[None, :, None, None] + layer.bias[None, :, None, None]
        return forward


@torch.no_grad()
def probe(vq: VQModel, scenes: int, seed: int = 0) -> dict:
    size, grid = vq.config.image_size, vq.config.grid_size
    patch = FrozenGroupNorm(vq)
    same = {"usual": [], "statistics frozen to the plain image's": []}
    options = SamplingOptions("train", max_word_len_for(size))
    for i in range(scenes):
        scene = sample_scene(scene_seed(seed, "probe-groupnorm", i), CATEGORIES[i % len(CATEGORIES)], options)
        image = pil_to_pixels([render_any_size(scene, size)], "cpu")
        plain = pil_to_pixels([Image.new("RGB", (size, size), tuple(BACKGROUNDS[scene.background]))], "cpu")
        far = torch.from_numpy(region_of_codes(scene, size, grid).reshape(-1) == REGIONS.index("background"))
        patch.mode = "off"
        plain_codes = vq.encode(plain).flatten()
        same["usual"].append(float((vq.encode(image).flatten()[far] == plain_codes[far]).float().mean()))
        patch.mode = "record"
        vq.encode(plain)
        patch.mode = "frozen"
        frozen = vq.encode(image).flatten()
        same["statistics frozen to the plain image's"].append(float((frozen[far] == plain_codes[far]).float().mean()))
    return {"scenes": scenes, "far_background_codes_as_on_the_plain_image":
            {k: round(float(np.mean(v)), 3) for k, v in same.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vq", default="checkpoints/tiny/vq")
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    vq = VQModel.from_pretrained(args.vq, dtype=torch.float32).eval()
    print(json.dumps(probe(vq, args.scenes, args.seed), indent=1))


if __name__ == "__main__":
    main()
