"""The exported folder is a plain transformers LlamaForCausalLM that computes what our decoder computes."""

import pytest
import torch

from ar_model.export import export_llama
from ar_model.generate import generate
from ar_model.sampling import SamplingConfig
from ar_model.sequence import caption_prefixes


transformers = pytest.importorskip("transformers")

PROMPTS = ["a red circle", "the word CAT in blue at the bottom", "three green triangles", "a blue square",
           "a small yellow diamond to the left of a large purple square", "the word DOG on a black background",
           "two orange diamonds", "a pink circle at the top left"]


@pytest.fixture(scope="module")
def exported(pipe, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    export_llama(pipe.decoder, folder, caption_tokenizer_dir=None)
    model = transformers.LlamaForCausalLM.from_pretrained(folder, torch_dtype=torch.float32).eval()
    return folder, model


def prompts_tensor(pipe):
    return caption_prefixes(pipe.decoder.config, [pipe.caption_tokenizer.encode(p) for p in PROMPTS])


def test_logits_equal_ours_on_8_prompts(pipe, exported):
    _, hf = exported
    c = pipe.decoder.config
    prompts = prompts_tensor(pipe)
    codes = torch.randint(0, c.codebook_size, (len(PROMPTS), c.image_tokens))
    seq = torch.cat([prompts, codes + c.image_offset], dim=1)
    with torch.no_grad():
        ours = pipe.decoder(seq)
        theirs = hf(input_ids=seq).logits.float()
    assert ours.shape == theirs.shape
    assert (ours - theirs).abs().max().item() < 1e-4


def test_greedy_tokens_identical_to_transformers_generate(pipe, exported):
    _, hf = exported
    c = pipe.decoder.config
    prompts = prompts_tensor(pipe)
    ours = generate(pipe.decoder, prompts, SamplingConfig("greedy"))
    with torch.no_grad():
        out = hf.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                          max_new_tokens=c.image_tokens, min_new_tokens=c.image_tokens,
                          suppress_tokens=list(range(c.image_offset)))  # ours picks among image codes only
    assert torch.equal(out[:, c.prefix_len:] - c.image_offset, ours)


def test_export_folder_contents(pipe, tmp_path):
    import json

    pipe.caption_tokenizer.save_pretrained(tmp_path / "tok")
    export_llama(pipe.decoder, tmp_path / "hf", caption_tokenizer_dir=tmp_path / "tok")
    names = sorted(p.name for p in (tmp_path / "hf").iterdir())
    assert names == ["config.json", "generation_config.json", "model.safetensors", "spiece.model",
                     "t2i_layout.json", "tokenizer_config.json"]
    layout = json.loads((tmp_path / "hf" / "t2i_layout.json").read_text())
    assert layout["image_offset"] == pipe.decoder.config.image_offset


def test_decode_benchmark_reports_what_it_timed(pipe, monkeypatch):
    """The report's arithmetic, on a clock that charges each timed call a known cost: 1 ms per sequence for our
    greedy decode (2 with guidance, which runs two), 4 beams x 2 for beam search with guidance, 3 ms per sequence
    for transformers. The real decoding still runs, so the greedy-token check is real too."""
    import tools.bench_decode as bench

    spent = []

    def charge(fn, cost):
        def wrapped(*args, **kwargs):
            spent.append(cost(*args, **kwargs))
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(bench, "generate", charge(
        bench.generate, lambda dec, prompts, s, uncond_prompts=None, **k: 1e-3 * len(prompts) * (
            1 if uncond_prompts is None else 2)))
    monkeypatch.setattr(bench, "beam_search", charge(bench.beam_search, lambda dec, prompts, s, nulls, **k: 8e-3))
    monkeypatch.setattr(bench, "transformers_greedy_image_tokens", charge(
        bench.transformers_greedy_image_tokens, lambda model, prompts, c: 3e-3 * len(prompts)))

    def timed(fn, device):
        spent.clear()
        fn()
        return sum(spent)

    monkeypatch.setattr(bench, "_timed", timed)

    report = bench.bench_decode(pipe, rounds=2, compile_decode=False)
    assert report["identical_greedy_tokens_vs_transformers"] is True
    seconds = {name: r["seconds"] for name, r in report["results"].items()}
    assert seconds == {"ours_b1": 0.001, "ours_b8": 0.008, "ours_b1_cfg": 0.002, "ours_b8_cfg": 0.016,
                       "ours_b1_beam4_cfg": 0.008, "ours_b1_beam_sample4_cfg": 0.008, "transformers_b1": 0.003,
                       "transformers_b8": 0.024}
    n = pipe.decoder.config.image_tokens
    assert report["results"]["ours_b8"]["ms_per_token"] == round(8.0 / n, 3)
    assert report["results"]["ours_b8"]["images_per_s"] == 1000.0
    ratios = report["ratios"]
    assert ratios["transformers_over_ours_b1"] == ratios["transformers_over_ours_b8"] == 3.0
    assert ratios["cfg_over_no_cfg_b1"] == 2.0 and ratios["beam4_cfg_over_greedy_cfg_b1"] == 4.0
    assert ratios["beam_sample4_cfg_over_beam4_cfg_b1"] == 1.0
    assert ratios["images_per_s_b8_over_b1"] == 1.0
    assert ratios["eager_over_compiled_b1"] is None and "ours_b1_compiled" not in seconds


def test_verify_export_reports_agreement(pipe, exported):
    from ar_model.export import verify_export

    folder, _ = exported
    report = verify_export(pipe.decoder, folder, prompts_tensor(pipe))
    assert report["prompts"] == len(PROMPTS)
    assert report["max_abs_logit_diff"] < 1e-4 and report["greedy_tokens_identical"] is True


def test_verify_export_sees_a_changed_weight(pipe, exported, tmp_path):
    """The check can fail: a folder whose weights differ from ours is reported as different."""
    from safetensors.torch import load_file, save_file

    from ar_model.export import verify_export

    folder, _ = exported
    import shutil

    shutil.copytree(folder, tmp_path / "bad")
    weights = load_file(str(tmp_path / "bad" / "model.safetensors"))
    weights["lm_head.weight"] = weights["lm_head.weight"] + 0.5
    save_file(weights, str(tmp_path / "bad" / "model.safetensors"), metadata={"format": "pt"})
    report = verify_export(pipe.decoder, tmp_path / "bad", prompts_tensor(pipe))
    assert report["max_abs_logit_diff"] > 1e-2
