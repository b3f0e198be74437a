"""Beam search, guidance controls (schedule, interval, negative prompt) and editing by tokens, on tiny models."""

import inspect
import itertools
from dataclasses import fields

import pytest
import torch

from ar_model.beam import beam_search, draw_extensions
from ar_model.config import ARConfig
from ar_model.generate import generate
from ar_model.generation_settings import GenerationSettings
from ar_model.model import ARDecoder
from ar_model.pipeline import TextToImage
from ar_model.sampling import SamplingConfig, guide
from ar_model.sequence import caption_prefixes, null_prefixes



def decoder(**overrides) -> ARDecoder:
    torch.manual_seed(0)
    cfg = dict(text_vocab_size=20, codebook_size=16, grid_size=3, max_caption_tokens=5, dim=32, n_layers=2,
               n_heads=4, n_kv_heads=2)
    m = ARDecoder(ARConfig(**{**cfg, **overrides})).eval()
    with torch.no_grad():  # a livelier random model, whose tokens depend on the caption and on guidance
        for name, p in m.named_parameters():
            if p.ndim == 2:
                p.mul_(10 if name.startswith(("embed", "lm_head")) else 4)
    return m


def guided_log_prob(m: ARDecoder, prompt: torch.Tensor, uncond: torch.Tensor | None, codes: torch.Tensor,
                    scale: float) -> torch.Tensor:
    """Sum of log-probs of ``codes`` (N, L) under the guided distribution, by full forwards without a cache."""
    c = m.config
    tokens = torch.cat([prompt.expand(len(codes), -1), codes + c.image_offset], dim=1)
    window = slice(c.prefix_len - 1, c.prefix_len - 1 + codes.shape[1])
    cond = m(tokens)[:, window, c.image_offset:c.image_offset + c.codebook_size]
    if uncond is not None:
        un = m(torch.cat([uncond.expand(len(codes), -1), codes + c.image_offset], 1))
        cond = guide(cond, un[:, window, c.image_offset:c.image_offset + c.codebook_size], scale)
    return cond.log_softmax(-1).gather(-1, codes[..., None]).squeeze(-1).sum(-1)


# Width 1, or (beam_sample) top-k 1, leaves one live code per step: the guided argmax, whatever the seed.
@pytest.mark.parametrize("guidance_scale", [1.0, 3.0])
@pytest.mark.parametrize("settings", [dict(sampler="beam", beam_width=1),
                                      dict(sampler="beam_sample", top_k=1, beam_width=3)])
def test_a_beam_left_one_code_per_step_is_greedy(guidance_scale, settings):
    m = decoder()
    prompts = caption_prefixes(m.config, [[1, 2], [3, 4, 5]])
    uncond = null_prefixes(m.config, 2) if guidance_scale > 1 else None
    greedy = generate(m, prompts, SamplingConfig("greedy", guidance_scale=guidance_scale), uncond_prompts=uncond)
    gens = [torch.Generator().manual_seed(s) for s in (0, 1)]
    beam, _ = beam_search(m, prompts, SamplingConfig(guidance_scale=guidance_scale, **settings), uncond,
                          generators=gens)
    assert torch.equal(beam, greedy)


@pytest.mark.parametrize("guidance_scale", [1.0, 2.5])
def test_wide_beam_finds_the_exhaustive_optimum(guidance_scale):
    # 3 codes, 2x2 image: 81 sequences; width 27 keeps every prefix, so the search is exhaustive.
    m = decoder(codebook_size=3, grid_size=2)
    c = m.config
    prompt = caption_prefixes(c, [[1, 2, 3]])
    uncond = null_prefixes(c, 1) if guidance_scale > 1 else None
    codes, log_prob = beam_search(m, prompt, SamplingConfig("beam", guidance_scale=guidance_scale, beam_width=27), uncond)
    every = torch.tensor(list(itertools.product(range(3), repeat=4)))
    scores = guided_log_prob(m, prompt, uncond, every, guidance_scale)
    assert torch.equal(codes[0], every[scores.argmax()])
    torch.testing.assert_close(log_prob[0], scores.max(), atol=1e-4, rtol=1e-5)
    # A narrow beam is not guaranteed the optimum, but what it reports is its own sequence's log-prob.
    narrow, narrow_lp = beam_search(m, prompt, SamplingConfig("beam", guidance_scale=guidance_scale, beam_width=2), uncond)
    torch.testing.assert_close(narrow_lp[0], guided_log_prob(m, prompt, uncond, narrow, guidance_scale)[0],
                               atol=1e-4, rtol=1e-5)


def test_beam_sample_follows_its_seed_and_reports_its_tempered_score():
    m = decoder()
    c = m.config
    prompts = caption_prefixes(c, [[1, 2]]).expand(2, -1)
    uncond = null_prefixes(c, 2)
    sampling = SamplingConfig("beam_sample", temperature=1.5, guidance_scale=2.0, beam_width=3)
    run = (lambda seeds: beam_search(m, prompts, sampling, uncond,
                                     generators=[torch.Generator().manual_seed(s) for s in seeds]))
    codes, score = run((0, 1))
    again, _ = run((0, 5))
    assert torch.equal(codes[0], again[0])  # an image depends on its own seed alone
    assert not torch.equal(codes[0], codes[1])  # two seeds, two images (this model, these seeds)
    # The score is the sum of the tempered guided log-probabilities of the returned codes (no top-k here).
    tokens = torch.cat([prompts, codes + c.image_offset], 1)
    window = slice(c.prefix_len - 1, c.prefix_len - 1 + c.image_tokens)
    cond = m(tokens)[:, window, c.image_offset:c.image_offset + c.codebook_size]
    un = m(torch.cat([uncond, codes + c.image_offset], 1))[:, window, c.image_offset:c.image_offset + c.codebook_size]
    tempered = (guide(cond, un, 2.0) / 1.5).log_softmax(-1).gather(-1, codes[..., None]).squeeze(-1).sum(-1)
    torch.testing.assert_close(score, tempered, atol=1e-4, rtol=1e-5)


def test_draw_extensions_keeps_the_best_of_two_draws_without_replacement():
    # One prompt, width 1, probabilities (0.5, 0.3, 0.2): the best code is kept unless both draws miss it,
    # P = 0.3 * 0.2 / 0.7 + 0.2 * 0.3 / 0.8 = 0.16071; the second code is kept only by drawing (1, 2) or (2, 1).
    total = torch.tensor([[0.5, 0.3, 0.2]]).log()
    gen = torch.Generator().manual_seed(0)
    kept = torch.tensor([int(draw_extensions(total, 1, [gen])[1][0, 0]) for _ in range(4000)])
    assert (kept == 2).sum() == 0  # the worst code can never beat a second draw
    assert abs((kept != 0).float().mean().item() - 0.16071) < 0.02  # 3.4 standard errors
    # Fewer live pairs than width: the rest are dead beams (score -inf), the live one first.
    scores, flat = draw_extensions(torch.tensor([[0.0, float("-inf"), float("-inf")]]), 2, None)
    assert flat[0, 0] == 0 and scores[0, 0] == 0 and scores[0, 1] == float("-inf")


def test_beam_log_prob_equals_full_forward_recomputation():
    m = decoder()
    prompts = caption_prefixes(m.config, [[1, 2], [7]])
    uncond = null_prefixes(m.config, 2)
    codes, log_prob = beam_search(m, prompts, SamplingConfig("beam", guidance_scale=2.0, beam_width=4), uncond)
    for b in range(2):
        expected = guided_log_prob(m, prompts[b:b + 1], uncond[b:b + 1], codes[b:b + 1], 2.0)
        torch.testing.assert_close(log_prob[b], expected[0], atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("sampler", ["greedy", "sample"])
def test_guidance_interval_zero_is_unguided_and_full_is_plain_cfg(sampler):
    m = decoder()
    c = m.config
    prompts, uncond = caption_prefixes(c, [[1, 2], [3]]), null_prefixes(c, 2)

    def run(**kw):
        gens = [torch.Generator().manual_seed(s) for s in (3, 4)]
        return generate(m, prompts, SamplingConfig(sampler, guidance_scale=3.0, **kw), gens, uncond)

    unguided = generate(m, prompts, SamplingConfig(sampler), [torch.Generator().manual_seed(s) for s in (3, 4)])
    assert torch.equal(run(guidance_interval=0), unguided)
    assert torch.equal(run(guidance_interval=c.image_tokens), run())
    assert not torch.equal(run(), unguided)
    partial = run(guidance_interval=4)
    assert torch.equal(partial[:, :4], run()[:, :4])  # the first tokens are guided as in plain CFG


def test_guidance_interval_shrinks_the_batch():
    m = decoder()
    c = m.config
    prompts, uncond = caption_prefixes(c, [[1, 2], [3]]), null_prefixes(c, 2)
    batches = []
    original = m.forward

    def spy(idx, input_pos=None):
        batches.append(idx.shape[0])
        return original(idx, input_pos)

    m.forward = spy
    generate(m, prompts, SamplingConfig("greedy", guidance_scale=3.0, guidance_interval=3), uncond_prompts=uncond)
    # The prefill and the steps that give the logits of tokens 1 and 2 run 4 rows; from then on only the 2
    # conditional rows run (one forward per image token after the first).
    assert batches == [4, 4, 4] + [2] * (c.image_tokens - 3)


def test_linear_schedule_ramps_from_one():
    s = SamplingConfig(guidance_scale=5.0, guidance_schedule="linear")
    assert [s.scale_at(i, 5) for i in range(5)] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert SamplingConfig(guidance_scale=5.0).scale_at(0, 5) == 5.0
    falling = SamplingConfig(guidance_scale=5.0, guidance_schedule="linear_decay")
    assert [falling.scale_at(i, 5) for i in range(5)] == [5.0, 4.0, 3.0, 2.0, 1.0]
    m = decoder()
    prompts, uncond = caption_prefixes(m.config, [[1, 2]]), null_prefixes(m.config, 1)
    ramped = generate(m, prompts, SamplingConfig(guidance_scale=4.0, guidance_schedule="linear"), uncond_prompts=uncond)
    unguided = generate(m, prompts, SamplingConfig())
    assert ramped[0, 0] == unguided[0, 0]  # scale 1 at the first token


def test_negative_prompt_replaces_the_null_caption(pipe):
    c, tok = pipe.decoder.config, pipe.caption_tokenizer
    prompts = caption_prefixes(c, [tok.encode("a red circle")])
    # Plain CFG is guidance against the null caption; a negative prompt takes exactly its place.
    plain = pipe("a red circle", guidance_scale=3.0).ids.flatten(1)
    assert torch.equal(plain, generate(pipe.decoder, prompts, SamplingConfig(guidance_scale=3.0),
                                       uncond_prompts=null_prefixes(c, 1)))
    negative = pipe("a red circle", guidance_scale=3.0, negative_prompt="a blue square").ids.flatten(1)
    assert torch.equal(negative, generate(pipe.decoder, prompts, SamplingConfig(guidance_scale=3.0),
                                          uncond_prompts=caption_prefixes(c, [tok.encode("a blue square")])))
    assert not torch.equal(plain, negative)


def test_complete_keeps_the_given_rows(pipe):
    source = pipe("the word CAT", sampler="sample", generator=torch.Generator().manual_seed(0))
    image = source.images[0]
    ids = pipe._image_ids(image)
    for keep in (0, 2, 4):
        out = pipe.complete(image, keep_rows=keep, prompt="a red circle", sampler="sample",
                            generator=torch.Generator().manual_seed(1))
        assert out.ids.shape == (1, 4, 4)
        assert torch.equal(out.ids[0, :keep], ids[:keep])
    assert not torch.equal(pipe.complete(image, keep_rows=0, prompt="a red circle", sampler="sample",
                                         generator=torch.Generator().manual_seed(1)).ids[0], ids)


def test_regenerate_changes_no_token_outside_the_box(pipe):
    image = pipe("a blue square", sampler="sample", generator=torch.Generator().manual_seed(0)).images[0]
    ids = pipe._image_ids(image)
    box = (5, 0, 11, 7)  # 16 px image, 4 px cells: columns 1-2, rows 0-1
    inside = torch.zeros(4, 4, dtype=torch.bool)
    inside[0:2, 1:3] = True
    changed = torch.zeros(4, 4, dtype=torch.bool)
    for seed in range(4):
        out = pipe.regenerate(image, box=box, prompt="a red circle", sampler="sample",
                              generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out.ids[0][~inside], ids[~inside])
        changed |= out.ids[0] != ids
    assert changed[inside].any()  # and the box itself is regenerated


@pytest.mark.parametrize("call, match", [
    (lambda p, im: p.complete(im, keep_rows=5, prompt="a red circle"), r"keep_rows must be an integer in \[0, 4\]"),
    (lambda p, im: p.complete(im.resize((32, 32)), keep_rows=1, prompt="a red circle"), "must be 16x16 pixels"),
    (lambda p, im: p.regenerate(im, box=(4, 4, 4, 8), prompt="a red circle"), "box must be"),
    (lambda p, im: p.regenerate(im, box=(0, 0, 17, 8), prompt="a red circle"), "box must be"),
    (lambda p, im: p.complete(im, keep_rows=1, prompt="a red circle", sampler="beam"), "does not edit"),
    (lambda p, im: p.complete(im, keep_rows=1, prompt="a red circle", colour="red"), "unknown arguments"),
])
def test_editing_rejects_bad_arguments(pipe, call, match):
    image = pipe("a red circle").images[0]
    with pytest.raises(ValueError, match=match):
        call(pipe, image)


def test_editing_settings_are_those_of_call():
    # complete and regenerate take __call__'s keyword arguments as GenerationSettings: same names, same defaults.
    params = list(inspect.signature(TextToImage.__call__).parameters.values())[2:]  # after self, prompt
    assert [(p.name, p.default) for p in params] == [(f.name, f.default) for f in fields(GenerationSettings)]
