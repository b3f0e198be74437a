"""Image layouts (ar_model.layout): structural tokens sit where the layout says, are fed and never sampled, and
every decoding path (cache, greedy, sampling, beam, guidance, editing, export) follows the layout."""

import pytest
import torch

from ar_model.beam import beam_search
from ar_model.config import ARConfig
from ar_model.export import allowed_tokens_fn, export_llama, image_codes_of, layout_record
from ar_model.generate import decode_one_token, generate
from ar_model.layout import image_layout, image_part
from ar_model.model import ARDecoder
from ar_model.sampling import SamplingConfig
from ar_model.sequence import caption_prefixes, null_prefixes, training_sequences

LAYOUTS = ["plain", "row_end", "row_start", "rope_2d"]


def decoder(layout: str, lively: bool = True, **overrides) -> ARDecoder:
    torch.manual_seed(0)
    cfg = dict(text_vocab_size=20, codebook_size=16, grid_size=3, max_caption_tokens=5, dim=32, n_layers=2,
               n_heads=4, n_kv_heads=2, image_layout=layout)
    m = ARDecoder(ARConfig(**{**cfg, **overrides})).eval()
    if lively:  # a random model whose tokens depend on the caption and on guidance
        with torch.no_grad():
            for name, p in m.named_parameters():
                if p.ndim == 2:
                    p.mul_(10 if name.startswith(("embed", "lm_head")) else 4)
    return m


def test_sequences_put_structural_tokens_where_the_layout_says():
    codes = torch.arange(9).view(1, 9)
    for layout, expected in [
        ("plain", list(range(9))),
        ("row_end", [0, 1, 2, "E", 3, 4, 5, "E", 6, 7, 8, "E"]),
        ("row_start", ["R0", 0, 1, 2, "R1", 3, 4, 5, "R2", 6, 7, 8]),
    ]:
        c = decoder(layout).config
        names = {"plain": {}, "row_end": {c.structural_offset: "E"},
                 "row_start": {c.structural_offset + r: f"R{r}" for r in range(3)}}[layout]
        part = image_part(c, codes)[0].tolist()
        assert [names.get(t, t - c.image_offset) for t in part] == expected
        assert len(part) == c.image_part_len and c.max_seq_len == c.prefix_len + len(part) + 1
        seq = training_sequences(c, caption_prefixes(c, [[1, 2]]), codes)[0]
        lay = image_layout(c)
        assert (seq[list(lay.code_positions)] - c.image_offset).tolist() == list(range(9))
        assert seq[-1] == c.eoi_id
        # Structural ids sit between the specials and the codes: never inside the codebook slice.
        assert c.image_offset == c.structural_offset + c.num_structural_tokens


@pytest.mark.parametrize("layout", LAYOUTS)
def test_cached_logits_equal_full_forward(layout):
    m = decoder(layout, lively=False)
    c = m.config
    seq = torch.randint(0, c.vocab_size, (3, c.max_seq_len))
    full = m(seq)
    with m.kv_caches(3):
        steps = [m(seq[:, :c.prefix_len], torch.arange(c.prefix_len))]
        steps += [m(seq[:, i:i + 1], torch.tensor([i])) for i in range(c.prefix_len, c.max_seq_len)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_rope_2d_turns_half_of_each_head_by_row_and_half_by_column():
    m = decoder("rope_2d", lively=False)
    c = m.config
    quarter, grid = c.head_dim // 4, torch.arange(c.image_tokens).view(c.grid_size, c.grid_size)
    cos = m.rope_cos[c.prefix_len:c.prefix_len + c.image_tokens]
    rows, cols = cos[:, :quarter], cos[:, quarter:2 * quarter]
    assert torch.equal(rows[grid[1, 0]], rows[grid[1, 2]]) and not torch.equal(rows[grid[0, 0]], rows[grid[1, 0]])
    assert torch.equal(cols[grid[0, 1]], cols[grid[2, 1]]) and not torch.equal(cols[grid[0, 0]], cols[grid[0, 1]])
    # The rotation of a code depends on its cell, not on its 1-D position: the first code of row 1 turns like
    # the row-1 cell it is, not like the code after the last of row 0.
    plain = decoder("plain", lively=False)
    assert not torch.equal(plain.rope_cos[c.prefix_len:c.prefix_len + c.image_tokens], cos)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_greedy_equals_argmax_of_full_forward_on_the_layout(layout):
    # nanoGPT's generate, no cache: each next code is the argmax over the codes of a full forward of the
    # sequence so far, built with the layout's structural tokens in place.
    m = decoder(layout)
    c = m.config
    prompts = caption_prefixes(c, [[1, 2, 3], [4], [5, 6, 7, 8, 9]])
    tokens = generate(m, prompts, SamplingConfig("greedy"))
    codes = torch.zeros(3, 0, dtype=torch.long)
    positions = image_layout(c).code_positions
    for i in range(c.image_tokens):
        seq = training_sequences(c, prompts, torch.cat([codes, torch.zeros(3, c.image_tokens - i,
                                                                          dtype=torch.long)], 1))
        logits = m(seq[:, :positions[i]])[:, -1, c.image_offset:c.image_offset + c.codebook_size]
        codes = torch.cat([codes, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(tokens, codes)


class Recorder:
    """A decode_fn that records every token fed after the prompt (first row of the batch)."""

    def __init__(self):
        self.fed: list[int] = []

    def __call__(self, model, token, input_pos):
        self.fed.append(int(token[0, 0]))
        return decode_one_token(model, token, input_pos)


def expected_feed(c: ARConfig, codes: torch.Tensor) -> list[int]:
    """What the model must read after the prompt: the image part up to the last code, which is never fed."""
    return image_part(c, codes[None])[0, :image_layout(c).code_positions[-1] - c.prefix_len].tolist()


def structural_loving(layout: str) -> ARDecoder:
    """A model whose head prefers the structural tokens (and caption ids) to every image code by far."""
    m = decoder(layout)
    with torch.no_grad():
        m.lm_head.weight[:m.config.image_offset] *= 100
        m.lm_head.weight[:m.config.image_offset] += 5
    return m


@pytest.mark.parametrize("layout", ["row_end", "row_start"])
@pytest.mark.parametrize("sampler", ["greedy", "sample"])
def test_structural_tokens_are_fed_never_sampled(layout, sampler):
    m = structural_loving(layout)
    c = m.config
    prompts = caption_prefixes(c, [[1, 2], [3]])
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    rec = Recorder()
    codes = generate(m, prompts, SamplingConfig(sampler, guidance_scale=2.0, guidance_interval=4), gens,
                     null_prefixes(c, 2), decode_fn=rec)
    assert codes.shape == (2, c.image_tokens) and 0 <= codes.min() and codes.max() < c.codebook_size
    assert rec.fed == expected_feed(c, codes[0])


@pytest.mark.parametrize("layout", ["row_end", "row_start"])
def test_beam_feeds_structural_tokens_and_matches_greedy_at_width_one(layout):
    m = structural_loving(layout)
    c = m.config
    prompts = caption_prefixes(c, [[1, 2], [3, 4, 5]])
    uncond = null_prefixes(c, 2)
    greedy = generate(m, prompts, SamplingConfig("greedy", guidance_scale=3.0), uncond_prompts=uncond)
    rec = Recorder()
    beam, _ = beam_search(m, prompts, SamplingConfig("beam", guidance_scale=3.0, beam_width=1), uncond, decode_fn=rec)
    assert torch.equal(beam, greedy)
    assert rec.fed == expected_feed(c, beam[0])
    wide, log_prob = beam_search(m, prompts, SamplingConfig("beam", guidance_scale=3.0, beam_width=4), uncond)
    assert 0 <= wide.min() and wide.max() < c.codebook_size
    # The reported score is that of the returned codes read in the layout (structural tokens in place).
    positions = list(image_layout(c).code_positions)
    window = [p - 1 for p in positions]
    for b in range(2):
        seq = training_sequences(c, prompts[b:b + 1], wide[b:b + 1])
        un = training_sequences(c, uncond[b:b + 1], wide[b:b + 1])
        cond_l = m(seq)[0, window, c.image_offset:c.image_offset + c.codebook_size]
        un_l = m(un)[0, window, c.image_offset:c.image_offset + c.codebook_size]
        guided = (un_l + 3.0 * (cond_l - un_l)).log_softmax(-1)
        torch.testing.assert_close(log_prob[b], guided.gather(-1, wide[b][:, None]).sum(), atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("layout", ["row_end", "row_start"])
def test_beam_sample_feeds_structural_tokens_never_sampled(layout):
    m = structural_loving(layout)
    c = m.config
    prompts = caption_prefixes(c, [[1, 2]])
    rec = Recorder()
    codes, _ = beam_search(m, prompts, SamplingConfig("beam_sample", guidance_scale=2.0, beam_width=1),
                           null_prefixes(c, 1), decode_fn=rec, generators=[torch.Generator().manual_seed(3)])
    assert codes.shape == (1, c.image_tokens) and 0 <= codes.min() and codes.max() < c.codebook_size
    assert rec.fed == expected_feed(c, codes[0])


@pytest.mark.parametrize("layout", ["row_end", "row_start"])
def test_editing_keeps_codes_and_feeds_structural_tokens(layout):
    m = structural_loving(layout)
    c = m.config
    fixed = torch.full((1, c.image_tokens), -1)
    fixed[0, :3] = torch.tensor([5, 6, 7])  # the top row kept
    rec = Recorder()
    codes = generate(m, caption_prefixes(c, [[1]]), SamplingConfig("greedy"), fixed=fixed, decode_fn=rec)
    assert codes[0, :3].tolist() == [5, 6, 7]
    assert rec.fed == expected_feed(c, codes[0])


@pytest.mark.parametrize("layout", ["plain", "row_end", "row_start"])
def test_export_parity_on_a_random_model(layout, tmp_path):
    transformers = pytest.importorskip("transformers")
    m = decoder(layout)
    c = m.config
    export_llama(m, tmp_path)
    hf = transformers.LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.float32).eval()
    prompts = caption_prefixes(c, [[1, 2, 3], [4], [5, 6, 7, 8, 9], [10, 11]])
    ours = generate(m, prompts, SamplingConfig("greedy"))
    seq = training_sequences(c, prompts, ours)
    with torch.no_grad():
        assert (m(seq) - hf(input_ids=seq).logits.float()).abs().max().item() < 1e-4
        out = hf.generate(input_ids=prompts, attention_mask=torch.ones_like(prompts), do_sample=False,
                          max_new_tokens=c.image_part_len, min_new_tokens=c.image_part_len,
                          prefix_allowed_tokens_fn=allowed_tokens_fn(c))
    generated = out[:, c.prefix_len:]
    assert torch.equal(generated, image_part(c, ours))  # structural tokens forced where they belong
    assert torch.equal(image_codes_of(generated, c), ours)
    record = layout_record(c)
    assert record["image_layout"] == layout and record["generated_tokens"] == c.image_part_len
    for step, token in record["forced_tokens"].items():
        assert generated[0, int(step)] == token


def test_rope_2d_refuses_to_export_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match="rope_2d"):
        export_llama(decoder("rope_2d"), tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_layout_is_a_clear_error():
    with pytest.raises(ValueError, match="image_layout must be one of"):
        decoder("columns")


def test_image_only_loss_reads_the_codes_alone_and_z_loss_adds_its_term():
    from tools.train.ar import sequence_loss
    from tools.train.config import ARTrainConfig

    c = decoder("row_start").config
    torch.manual_seed(1)
    codes = torch.randint(0, c.codebook_size, (2, c.image_tokens))
    seq = training_sequences(c, caption_prefixes(c, [[1, 2], [3]]), codes)
    logits = torch.randn(2, c.max_seq_len - 1, c.vocab_size)
    loss, _ = sequence_loss(c, ARTrainConfig(image_only_loss=True), logits, seq)
    window = [p - 1 for p in image_layout(c).code_positions]
    expected = torch.nn.functional.cross_entropy(
        logits[:, window, c.image_offset:c.image_offset + c.codebook_size].reshape(-1, c.codebook_size),
        codes.reshape(-1))
    torch.testing.assert_close(loss, expected)
    full, _ = sequence_loss(c, ARTrainConfig(), logits, seq)  # every token after BOI, whole vocabulary
    after_boi = logits[:, c.prefix_len - 1:]
    torch.testing.assert_close(full, torch.nn.functional.cross_entropy(
        after_boi.reshape(-1, c.vocab_size), seq[:, c.prefix_len:].reshape(-1)))
    with_z, fields = sequence_loss(c, ARTrainConfig(z_loss=0.01), logits, seq)
    torch.testing.assert_close(with_z - full, torch.tensor(0.01 * fields["z"]))
    torch.testing.assert_close(torch.tensor(fields["z"]), after_boi.logsumexp(-1).pow(2).mean())


def test_the_readme_export_recipe_reproduces_our_greedy_codes(tmp_path):
    """The README's plain-transformers recipe, run as written (paths swapped) on a row_start export."""
    pytest.importorskip("transformers")
    from pathlib import Path

    from ar_model.pipeline import TextToImage
    from ar_model.text_tokenizer import CaptionTokenizer
    from vq.config import VQConfig
    from vq.model import VQModel

    torch.manual_seed(0)
    tokenizer = CaptionTokenizer.train(["a red circle", "the word CAT at the top", "two blue squares"] * 20,
                                       vocab_size=300, max_tokens=16)
    vq = VQModel(VQConfig(image_size=16, base_channels=8, channel_mult=(1, 2, 2), latent_dim=8, codebook_size=32,
                          codebook_dim=4, kmeans_init=False)).eval()
    m = decoder("row_start", text_vocab_size=tokenizer.vocab_size, codebook_size=32, grid_size=4,
                max_caption_tokens=16)
    TextToImage(vq, tokenizer, m).save_pretrained(tmp_path / "pipe")
    export_llama(m, tmp_path / "export", tmp_path / "pipe" / "caption_tokenizer")
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    code = readme[readme.index("import json, torch\nfrom transformers"):]
    code = code[:code.index("```")]
    code = (code.replace('"checkpoints/tiny"', repr(str(tmp_path / "pipe")))
            .replace('"export/t2i_layout.json"', repr(str(tmp_path / "export" / "t2i_layout.json")))
            .replace('from_pretrained("export")', f'from_pretrained({str(tmp_path / "export")!r})'))
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102  (our own README)
    ours = generate(m, caption_prefixes(m.config, [tokenizer.encode("a red circle")]), SamplingConfig("greedy"))
    assert torch.equal(namespace["codes"], ours[0])
    assert namespace["image"].shape == (1, 3, 16, 16)
