"""The AR decoder, its cache, sampling, guidance, tokenizer and pipeline, on tiny configs (seconds on a CPU)."""

import json

import pytest
from safetensors import safe_open
from safetensors.torch import load_file
import torch

from ar_model.config import ARConfig
from ar_model.beam import beam_search
from ar_model.generate import decode_one_token, generate
from ar_model.model import ARDecoder
from ar_model.pipeline import TextToImage
from ar_model.sampling import SamplingConfig, filter_logits
from ar_model.sequence import caption_prefixes, null_prefixes
from ar_model.text_tokenizer import CaptionTokenizer, min_vocab_size, spell_words
from tools.train.ar import train_ar
from tools.train.config import ARPreset
from vq.model import VQModel
from vq.pretrained import CheckpointError

from .conftest import CAPTIONS, SMALL



def decoder(**overrides) -> ARDecoder:
    torch.manual_seed(0)
    cfg = dict(text_vocab_size=20, codebook_size=16, grid_size=3, max_caption_tokens=5, **SMALL)
    return ARDecoder(ARConfig(**{**cfg, **overrides})).eval()


# --- decoder and cache ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("n_kv_heads", [4, 2, 1])
def test_cached_logits_equal_full_forward_at_every_position(n_kv_heads):
    m = decoder(n_kv_heads=n_kv_heads)
    seq = torch.randint(0, m.config.vocab_size, (3, m.config.max_seq_len))
    full = m(seq)
    split = m.config.prefix_len
    with m.kv_caches(3):
        steps = [m(seq[:, :split], torch.arange(split))]
        steps += [m(seq[:, i:i + 1], torch.tensor([i])) for i in range(split, m.config.max_seq_len)]
    cached = torch.cat(steps, dim=1)
    assert cached.shape == full.shape == (3, m.config.max_seq_len, m.config.vocab_size)
    assert torch.isfinite(full).all()
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("guidance_interval", [None, 4])
def test_cache_is_allocated_once_per_call(guidance_interval):
    m = decoder()
    buffers = []

    def recording_step(model, token, input_pos):
        cache = model.layers[0].self_attn.kv_cache
        buffers.append((cache.k.data_ptr(), cache.v.data_ptr()))
        return decode_one_token(model, token, input_pos)

    prompts = caption_prefixes(m.config, [[1, 2], [3]])
    generate(m, prompts, SamplingConfig(guidance_scale=2.0, guidance_interval=guidance_interval), uncond_prompts=null_prefixes(
        m.config, 2), decode_fn=recording_step)
    # Every step writes the same memory in place (shrinking for the end of guidance keeps it too).
    assert len(buffers) == m.config.image_tokens - 1 and len(set(buffers)) == 1
    assert not m.caches_installed  # and the call takes them away


def test_full_forward_after_generate_equals_the_forward_before():
    m = decoder()
    seq = torch.randint(0, m.config.vocab_size, (2, m.config.max_seq_len))
    before = m(seq)
    generate(m, caption_prefixes(m.config, [[1, 2], [3]]), SamplingConfig(guidance_scale=2.0),
             uncond_prompts=null_prefixes(m.config, 2))
    assert torch.equal(m(seq), before)  # no clear_caches: the decoder keeps no decoding state
    beam_search(m, caption_prefixes(m.config, [[1]]), SamplingConfig("beam", beam_width=2))
    assert torch.equal(m(seq), before)
    with pytest.raises(RuntimeError, match="boom"), m.kv_caches(2):
        raise RuntimeError("boom")
    assert torch.equal(m(seq), before)  # an error inside the block takes the caches away too


def test_greedy_equals_repeated_argmax_of_full_forward():
    m = decoder()
    c = m.config
    prompts = caption_prefixes(c, [[1, 2, 3], [4], [5, 6, 7, 8, 9]])
    tokens = generate(m, prompts, SamplingConfig("greedy"))
    seq = prompts.clone()
    for _ in range(c.image_tokens):  # nanoGPT's generate: no cache, full forward, argmax over the image codes
        logits = m(seq)[:, -1, c.image_offset:c.image_offset + c.codebook_size]
        seq = torch.cat([seq, logits.argmax(-1, keepdim=True) + c.image_offset], dim=1)
    assert tokens.shape == (3, c.image_tokens) and tokens.dtype == torch.long
    assert torch.equal(tokens, seq[:, c.prefix_len:] - c.image_offset)


@pytest.mark.parametrize("sampler", ["greedy", "sample"])
def test_guidance_scale_one_equals_no_guidance(sampler):
    m = decoder()
    prompts = caption_prefixes(m.config, [[1, 2], [3, 4, 5]])
    sampling = SamplingConfig(sampler, guidance_scale=1.0)
    plain = generate(m, prompts, sampling, [torch.Generator().manual_seed(s) for s in (1, 2)])
    # The doubled batch (captions + null captions) at scale 1 must give the captions' tokens exactly.
    doubled = generate(m, prompts, sampling, [torch.Generator().manual_seed(s) for s in (1, 2)],
                       uncond_prompts=null_prefixes(m.config, 2))
    assert torch.equal(plain, doubled)
    guided = generate(m, prompts, SamplingConfig(sampler, guidance_scale=4.0),
                      [torch.Generator().manual_seed(s) for s in (1, 2)], uncond_prompts=null_prefixes(m.config, 2))
    assert not torch.equal(plain, guided)  # and guidance does change something


def test_seeds_decide_the_samples():
    m = decoder(codebook_size=64)
    prompts = caption_prefixes(m.config, [[1, 2]] * 2)
    sampling = SamplingConfig("sample", temperature=1.0)

    def run(*seeds):
        return generate(m, prompts, sampling, [torch.Generator().manual_seed(s) for s in seeds])

    a, b = run(7, 8), run(7, 8)
    assert torch.equal(a, b)
    assert not torch.equal(a[0], a[1])  # two images, two seeds, same prompt
    assert not torch.equal(run(9, 8)[0], a[0]) and torch.equal(run(9, 8)[1], a[1])  # each row has its own seed


def test_top_k_and_top_p_filters():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    assert torch.isinf(filter_logits(logits, 2, None)).tolist() == [[False, False, True, True, True]]
    probs = logits.softmax(-1)[0]  # 0.636, 0.234, 0.086, ...
    kept = ~torch.isinf(filter_logits(logits, None, float(probs[0] + 0.01)))
    assert kept.tolist() == [[True, True, False, False, False]]
    assert (~torch.isinf(filter_logits(logits, None, 0.5))).sum() == 1  # the top token always stays


def test_save_load_round_trip(tmp_path):
    m = decoder()
    m.save_pretrained(tmp_path / "decoder")
    loaded = ARDecoder.from_pretrained(tmp_path / "decoder")
    assert loaded.config == m.config
    assert all(torch.equal(a, b) for a, b in zip(m.state_dict().values(), loaded.state_dict().values()))
    seq = torch.randint(0, m.config.vocab_size, (2, 12))
    assert torch.equal(m(seq), loaded(seq))


# --- caption tokenizer -------------------------------------------------------------------------------------

def test_words_are_spelled_letter_by_letter(tokenizer):
    assert spell_words("the word CAT and a red circle") == "the word C A T and a red circle"
    pieces = [tokenizer.sp.id_to_piece(i) for i in tokenizer.encode("the word QUIZ")]
    assert pieces[-4:] == ["\u2581Q", "\u2581U", "\u2581I", "\u2581Z"]  # unseen word, letters as pieces
    assert tokenizer.decode(tokenizer.encode("a red circle")) == "a red circle"
    assert tokenizer.encode("  a   red\tcircle ") == tokenizer.encode("a red circle")


def test_quoted_text_is_spelled_whatever_its_case():
    assert spell_words('a sign that says "Open now" and the word CAT') == \
        'a sign that says " O p e n " " n o w " and the word C A T'
    assert spell_words('a "b') == 'a "b' and spell_words('say ""') == "say "  # unpaired quote, empty quotes
    captions = ['a sign that says "OPEN"', 'a door marked "exit"'] * 10
    tok = CaptionTokenizer.train(captions, vocab_size=400, max_tokens=32)
    pieces = [tok.sp.id_to_piece(i) for i in tok.encode('a sign that says "QUIZ"')]
    assert pieces[-6:] == ['\u2581"', "\u2581Q", "\u2581U", "\u2581I", "\u2581Z", '\u2581"']  # unseen, by letter


def test_too_small_caption_vocabulary_is_raised_to_the_minimum_with_a_warning():
    captions = ["a red circle", 'a sign that says "Hi"', "the word CAT, twice!"] * 20
    needed = min_vocab_size(captions)
    assert needed == 256 + 1 + 26 + len(set("\u2581aredcilsgnthy\"wo,!"))  # byte, unk, letters; chars (not H: \u2581H is a letter)
    with pytest.warns(UserWarning, match=f"vocab_size 128 is too small for these captions; using {needed}"):
        tok = CaptionTokenizer.train(captions, vocab_size=128, max_tokens=32)
    assert tok.vocab_size >= needed and tok.decode(tok.encode("a red circle")) == "a red circle"
    with pytest.raises(RuntimeError):  # the minimum is exact: one piece fewer is what sentencepiece refuses
        import io

        import sentencepiece as spm
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter([spell_words(c) for c in captions]), model_writer=io.BytesIO(),
            vocab_size=needed - 1, model_type="bpe", byte_fallback=True, character_coverage=1.0, unk_id=0,
            bos_id=-1, eos_id=-1, pad_id=-1, user_defined_symbols=[f"\u2581{c}" for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"],
            hard_vocab_limit=False, num_threads=1, minloglevel=2)


@pytest.mark.parametrize("text, match", [
    ("", "empty"), ("   ", "empty"), ("a red circl\u00e9", "not allowed"), ("a red \u2603", "not allowed"),
    ("a red circle " * 20, "tokens long"), (None, "must be a string"),
])
def test_tokenizer_rejects_bad_text(tokenizer, text, match):
    with pytest.raises(ValueError, match=match):
        tokenizer.encode(text)


def test_tokenizer_round_trip_and_missing_file(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path / "tok")
    loaded = CaptionTokenizer.from_pretrained(tmp_path / "tok")
    assert loaded.encode("the word CAT in blue") == tokenizer.encode("the word CAT in blue")
    (tmp_path / "tok" / "spiece.model").write_bytes(b"not a model")
    with pytest.raises(CheckpointError, match="spiece.model"):
        CaptionTokenizer.from_pretrained(tmp_path / "tok")
    (tmp_path / "tok" / "spiece.model").unlink()
    with pytest.raises(CheckpointError, match="has no spiece.model"):
        CaptionTokenizer.from_pretrained(tmp_path / "tok")


# --- pipeline ------------------------------------------------------------------------------------------------

def test_pipeline_output_and_seeds(pipe):
    out = pipe(["a red circle", "the word CAT"], num_images_per_prompt=2, sampler="sample", guidance_scale=2.0,
               generator=torch.Generator().manual_seed(0))
    assert len(out.images) == 4 and out.images[0].size == (16, 16) and out.images[0].mode == "RGB"
    assert out.ids.shape == (4, 4, 4) and out.prompts == ["a red circle"] * 2 + ["the word CAT"] * 2
    again = pipe(["a red circle", "the word CAT"], num_images_per_prompt=2, sampler="sample", guidance_scale=2.0,
                 generator=torch.Generator().manual_seed(0))
    assert torch.equal(out.ids, again.ids)
    other = pipe(["a red circle", "the word CAT"], num_images_per_prompt=2, sampler="sample", guidance_scale=2.0,
                 generator=torch.Generator().manual_seed(1))
    assert not torch.equal(out.ids, other.ids)


def test_pipeline_save_load_round_trip(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    loaded = TextToImage.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    a = pipe("a blue square", guidance_scale=2.0)
    b = loaded("a blue square", guidance_scale=2.0)
    assert torch.equal(a.ids, b.ids) and a.images[0].tobytes() == b.images[0].tobytes()


def test_generation_defaults_are_saved_and_fill_what_a_call_leaves_out(pipe, tmp_path):
    chosen = TextToImage(pipe.vq, pipe.caption_tokenizer, pipe.decoder,
                         generation_defaults={"sampler": "sample", "top_k": 3, "guidance_scale": 1.5})
    chosen.save_pretrained(tmp_path / "p")
    loaded = TextToImage.from_pretrained(tmp_path / "p")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.generation_defaults == {"sampler": "sample", "temperature": 1.0, "top_k": 3, "top_p": None,
                                          "guidance_scale": 1.5, "beam_width": 4}
    seed = (lambda: torch.Generator().manual_seed(0))
    by_default = loaded("a blue square", num_images_per_prompt=3, generator=seed())
    explicit = pipe("a blue square", num_images_per_prompt=3, sampler="sample", temperature=1.0, top_k=3, guidance_scale=1.5,
                    generator=seed())
    assert torch.equal(by_default.ids, explicit.ids)
    # top_k=0 turns the checkpoint's top-k off.
    unfiltered = pipe("a blue square", num_images_per_prompt=3, sampler="sample", guidance_scale=1.5, generator=seed())
    assert torch.equal(loaded("a blue square", num_images_per_prompt=3, top_k=0, generator=seed()).ids, unfiltered.ids)
    assert not torch.equal(unfiltered.ids, explicit.ids)
    # A beam default's width fills a call that names none.
    beamy = TextToImage(pipe.vq, pipe.caption_tokenizer, pipe.decoder,
                        generation_defaults={"sampler": "beam", "beam_width": 2, "guidance_scale": 1.5})
    narrow = pipe("a blue square", sampler="beam", beam_width=2, guidance_scale=1.5)
    assert torch.equal(beamy("a blue square").log_probs, narrow.log_probs)
    assert not torch.equal(beamy("a blue square", beam_width=1).log_probs, narrow.log_probs)
    with pytest.raises(ValueError, match="beam_width must be"):
        TextToImage(pipe.vq, pipe.caption_tokenizer, pipe.decoder, generation_defaults={"beam_width": 0})
    with pytest.raises(ValueError, match="unknown generation defaults"):
        TextToImage(pipe.vq, pipe.caption_tokenizer, pipe.decoder, generation_defaults={"top_n": 3})
    with pytest.raises(ValueError, match="top_k must be"):
        TextToImage(pipe.vq, pipe.caption_tokenizer, pipe.decoder, generation_defaults={"top_k": 0})


def test_fp16_release_loads_as_float32(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p16", dtype=torch.float16)
    loaded = TextToImage.from_pretrained(tmp_path / "p16")
    assert loaded.decoder.embed_tokens.weight.dtype == torch.float32
    ref = pipe.decoder.embed_tokens.weight
    torch.testing.assert_close(loaded.decoder.embed_tokens.weight, ref.half().float())


@pytest.mark.parametrize("kwargs, match", [
    (dict(prompt=""), "prompt is empty"),
    (dict(prompt="a red circle " * 20), "tokens long"),
    (dict(prompt="a r\u00e9d circle"), "not allowed"),
    (dict(prompt=[]), "non-empty list"),
    (dict(prompt=3), "prompt must be"),
    (dict(guidance_scale=0.5), "guidance_scale must be a number >= 1"),
    (dict(top_p=0.0, sampler="sample"), "top_p must be"),
    (dict(top_p=1.5, sampler="sample"), "top_p must be"),
    (dict(top_k=-1, sampler="sample"), "top_k must be"),
    (dict(temperature=-1.0, sampler="sample"), "temperature must be"),
    (dict(num_images_per_prompt=0), "num_images_per_prompt must be"),
    (dict(sampler="nucleus"), "sampler must be one of"),
    (dict(sampler="beam", beam_width=0), "beam_width must be"),
    (dict(guidance_schedule="cosine"), "guidance_schedule must be one of"),
    (dict(guidance_interval=-1), "guidance_interval must be"),
    (dict(negative_prompt=["a", "b"]), "one per prompt"),
    (dict(negative_prompt="blue \u2603"), "negative_prompt: prompt"),
    (dict(generator=[torch.Generator()] * 3), "one torch.Generator per image"),
    (dict(generator=5), "generator must be"),
])
def test_pipeline_rejects_bad_arguments(pipe, kwargs, match):
    kwargs = {"prompt": "a red circle", **kwargs}
    with pytest.raises(ValueError, match=match):
        pipe(**kwargs)


def test_checkpoint_with_a_component_missing(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    import shutil

    shutil.rmtree(tmp_path / "p" / "caption_tokenizer")
    with pytest.raises(CheckpointError, match=r"missing \['caption_tokenizer'\]"):
        TextToImage.from_pretrained(tmp_path / "p")


def test_components_that_do_not_fit(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    cfg = json.loads((tmp_path / "p" / "decoder" / "config.json").read_text())
    ARDecoder(ARConfig.from_dict({**cfg, "codebook_size": 64})).save_pretrained(tmp_path / "p" / "decoder")
    with pytest.raises(CheckpointError, match="do not fit together"):
        TextToImage.from_pretrained(tmp_path / "p")


# --- training ------------------------------------------------------------------------------------------------

def tiny_preset(**train) -> ARPreset:
    return ARPreset.from_dict({"model": {"max_caption_tokens": 64, **SMALL},
                               "train": {"batch_size": 4, "lr": 1e-2, "warmup_steps": 5, "max_steps": 150,
                                         "log_every": 1, "checkpoint_every": 5, "text_vocab_size": 320,
                                         "caption_dropout": 0.0, "bf16": False, **train}})


def test_preset_model_is_a_config_the_trainer_completes():
    preset = ARPreset.from_name("tiny")
    assert isinstance(preset.model, ARConfig) and preset.model.max_caption_tokens == 32
    config = preset.model_config(text_vocab_size=300, codebook_size=64, grid_size=4)
    assert (config.text_vocab_size, config.codebook_size, config.grid_size) == (300, 64, 4)
    assert config == ARConfig.from_dict({**preset.model.to_dict(), "text_vocab_size": 300, "codebook_size": 64,
                                         "grid_size": 4})
    # A preset that names no caption length gets ARConfig's, for the tokenizer's data as for the decoder.
    assert ARPreset.from_dict({}).model.max_caption_tokens == ARConfig().max_caption_tokens == 40
    with pytest.raises(ValueError, match=r"unknown ARConfig keys \['dimm'\]"):
        ARPreset.from_dict({"model": {"dimm": 8}})


@pytest.fixture(scope="module")
def training_data(tmp_path_factory, pipe):
    folder = tmp_path_factory.mktemp("ar-train")
    pipe.vq.save_pretrained(folder / "vq")
    torch.manual_seed(0)
    images = (torch.rand(4, 3, 16, 16) * 255).to(torch.uint8)
    return folder, images, CAPTIONS[:4]


def losses(path):
    return [(r["step"], r["loss"]) for r in map(json.loads, path.read_text().splitlines())]


def test_training_overfits_one_batch(training_data, tmp_path):
    folder, images, captions = training_data
    pipeline_dir = train_ar(tiny_preset(), folder / "vq", images, captions, tmp_path / "run", progress=False)
    record = losses(tmp_path / "run" / "metrics.jsonl")
    assert record[-1][1] < record[0][1] / 10, record[::10]
    trained = TextToImage.from_pretrained(pipeline_dir)
    trained.set_progress_bar_config(disable=True)
    # It learned the data: greedy decoding of a training caption gives that image's codes back.
    codes = trained.vq.encode(images[:1].float() / 255)
    assert torch.equal(trained(captions[0], guidance_scale=1.0).ids, codes)


def test_compiled_training_matches_eager_and_resumes_without_compile(training_data, tmp_path):
    """``compile`` changes how a step is computed, not what: the same losses (to float rounding), and its
    checkpoint is the plain module's, so a run started compiled can be resumed without compiling."""
    folder, images, captions = training_data
    preset = tiny_preset(max_steps=6)
    train_ar(preset, folder / "vq", images, captions, tmp_path / "eager", progress=False)
    compiled = tiny_preset(max_steps=6, compile=True)
    train_ar(compiled, folder / "vq", images, captions, tmp_path / "compiled", progress=False, stop_after=5)
    train_ar(preset, folder / "vq", images, captions, tmp_path / "compiled", progress=False, resume=True)
    eager, mixed = losses(tmp_path / "eager" / "metrics.jsonl"), losses(tmp_path / "compiled" / "metrics.jsonl")
    assert [s for s, _ in mixed] == [1, 2, 3, 4, 5, 6]
    for (step, a), (_, b) in zip(eager, mixed):
        assert b == pytest.approx(a, rel=1e-4), step
    TextToImage.from_pretrained(tmp_path / "compiled" / "pipeline")


def test_resumed_run_repeats_the_losses(training_data, tmp_path):
    folder, images, captions = training_data
    preset = tiny_preset(max_steps=12, caption_dropout=0.5)
    train_ar(preset, folder / "vq", images, captions, tmp_path / "full", progress=False)
    train_ar(preset, folder / "vq", images, captions, tmp_path / "cut", progress=False, stop_after=7)
    train_ar(preset, folder / "vq", images, captions, tmp_path / "cut", progress=False, resume=True)
    full, cut = dict(losses(tmp_path / "full" / "metrics.jsonl")), losses(tmp_path / "cut" / "metrics.jsonl")
    assert [s for s, _ in cut] == [1, 2, 3, 4, 5, 6, 7, 6, 7, 8, 9, 10, 11, 12]  # restarted at checkpoint 5
    for step, loss in cut:
        assert loss == pytest.approx(full[step], rel=1e-6), step
    training = json.loads((tmp_path / "cut" / "training.json").read_text())
    assert training["steps"] == 12 and training["train_seconds"] > 0  # both process starts counted
    with pytest.raises(ValueError, match="exists"):
        train_ar(preset, folder / "vq", images, captions, tmp_path / "full", progress=False)


def test_resume_with_a_new_max_steps_records_where_the_schedule_changed(training_data, tmp_path, caplog):
    """Shortening a run on resume lays the cosine over the new total from the checkpoint on; training.json
    keeps both schedules, so a reader of the record knows the learning rate jumped there."""
    from tools.train.loop import learning_rate
    folder, images, captions = training_data
    train_ar(tiny_preset(max_steps=20), folder / "vq", images, captions, tmp_path / "cut", progress=False,
             stop_after=12)
    with caplog.at_level("WARNING"):
        train_ar(tiny_preset(max_steps=14), folder / "vq", images, captions, tmp_path / "cut", progress=False,
                 resume=True)
    assert "max_steps changed from 20 to 14 at step 10" in caplog.text
    training = json.loads((tmp_path / "cut" / "training.json").read_text())
    assert training["steps"] == 14
    assert training["schedule"] == [{"from_step": 0, "max_steps": 20}, {"from_step": 10, "max_steps": 14}]
    records = map(json.loads, (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines())
    lrs = {r["step"]: r["lr"] for r in records}  # a step logged twice keeps its resumed value
    assert lrs[10] == pytest.approx(learning_rate(9, 1e-2, 5, 20))  # logged before the stop, old schedule
    assert lrs[11] == pytest.approx(learning_rate(10, 1e-2, 5, 14))  # the first resumed step, new schedule
    assert lrs[11] != pytest.approx(learning_rate(10, 1e-2, 5, 20))


def test_zero_minutes_resume_writes_the_checkpoints_pipeline(training_data, tmp_path):
    """``max_minutes=0`` with ``resume``: no step is trained, and the pipeline holds the checkpoint's weights
    (how a copy of a running run's folder is judged mid-way)."""
    folder, images, captions = training_data
    preset = tiny_preset(max_steps=12)
    train_ar(preset, folder / "vq", images, captions, tmp_path / "cut", progress=False, stop_after=7)
    assert not (tmp_path / "cut" / "pipeline").exists()
    logged = (tmp_path / "cut" / "metrics.jsonl").read_text()
    pipeline = train_ar(preset, folder / "vq", images, captions, tmp_path / "cut", progress=False, resume=True,
                        max_minutes=0)
    assert (tmp_path / "cut" / "metrics.jsonl").read_text() == logged
    assert json.loads((tmp_path / "cut" / "training.json").read_text())["steps"] == 5  # the last checkpoint
    with safe_open(str(tmp_path / "cut" / "checkpoint.safetensors"), "pt") as f:
        checkpointed = {k[6:]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
    decoder = load_file(str(pipeline / "decoder" / "model.safetensors"))
    assert decoder.keys() == checkpointed.keys()
    for name, value in decoder.items():
        assert torch.equal(value, checkpointed[name]), name


def test_warm_start_continues_the_weights_and_counts_their_time(training_data, tmp_path):
    """--init-from: the run starts from the pipeline's decoder, VQ and caption tokenizer (the first loss is the
    trained model's, far below a fresh one's), with a fresh optimizer; training.json says where it started and
    its train_seconds include the weights' own."""
    folder, images, captions = training_data
    first = train_ar(tiny_preset(max_steps=60), folder / "vq", images, captions, tmp_path / "first", progress=False)
    trained_loss = losses(tmp_path / "first" / "metrics.jsonl")[-1][1]
    prior = json.loads((tmp_path / "first" / "training.json").read_text())
    train_ar(tiny_preset(max_steps=3), None, images, captions, tmp_path / "warm", progress=False, init_from=first)
    warm = losses(tmp_path / "warm" / "metrics.jsonl")
    assert warm[0][1] < 2 * trained_loss + 0.05, (warm, trained_loss)
    fresh_first = losses(tmp_path / "first" / "metrics.jsonl")[0][1]
    assert warm[0][1] < fresh_first / 5, (warm, fresh_first)
    record = json.loads((tmp_path / "warm" / "training.json").read_text())
    assert record["init_from"] == {"path": str(first), "steps": 60, "train_seconds": prior["train_seconds"]}
    # Three steps take a fraction of a second, which the 0.1 s rounding may swallow.
    assert record["steps"] == 3 and prior["train_seconds"] <= record["train_seconds"] < prior["train_seconds"] + 60
    # The tokenizers are the pipeline's, not retrained on the new captions.
    assert (tmp_path / "warm" / "caption_tokenizer" / "spiece.model").read_bytes() == \
        (first / "caption_tokenizer" / "spiece.model").read_bytes()


def test_warm_start_refuses_another_shape_or_vq(training_data, tmp_path, pipe):
    folder, images, captions = training_data
    first = train_ar(tiny_preset(max_steps=2), folder / "vq", images, captions, tmp_path / "first", progress=False)
    wider = ARPreset.from_dict({"model": {"max_caption_tokens": 64, **SMALL, "dim": 64},
                                "train": tiny_preset(max_steps=2).train.to_dict()})
    with pytest.raises(ValueError, match=r"--init-from: the decoder there does not have the preset's shape.*'dim': "
                                         r"\(32, 64\)"):
        train_ar(wider, None, images, captions, tmp_path / "wider", progress=False, init_from=first)
    other = VQModel(pipe.vq.config)  # same shape, other weights
    other.save_pretrained(tmp_path / "other-vq")
    with pytest.raises(ValueError, match="--vq: .* is not the VQ tokenizer of the --init-from pipeline"):
        train_ar(tiny_preset(max_steps=2), tmp_path / "other-vq", images, captions, tmp_path / "v", progress=False,
                 init_from=first)
    (tmp_path / "first" / "training.json").unlink()
    with pytest.raises(ValueError, match="--init-from: found no training.json with train_seconds"):
        train_ar(tiny_preset(max_steps=2), None, images, captions, tmp_path / "n", progress=False, init_from=first)


def test_loading_says_what_is_wrong_with_a_hub_name_or_an_unavailable_device(pipe, tmp_path):
    with pytest.raises(CheckpointError, match="'org/model' is not a local folder; loading from the Hugging Face Hub "
                                              "is not supported"):
        TextToImage.from_pretrained("org/model")
    with pytest.raises(CheckpointError, match="checkpoint folder '.*nowhere' does not exist"):
        TextToImage.from_pretrained(tmp_path / "nowhere")
    pipe.save_pretrained(tmp_path / "p")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"device 'cuda' is not available \(.*\); available: \['cpu'\]"):
            TextToImage.from_pretrained(tmp_path / "p", device="cuda")
        with pytest.raises(ValueError, match=r"device 'cuda:0' is not available"):
            ARDecoder.from_pretrained(tmp_path / "p" / "decoder", device="cuda:0")
    with pytest.raises(ValueError, match="device 'abacus' is not a torch device"):
        TextToImage.from_pretrained(tmp_path / "p", device="abacus")


def test_output_repr_is_a_summary(pipe):
    out = pipe(["a red circle", "three green triangles"], num_images_per_prompt=2, sampler="greedy")
    assert repr(out) == "TextToImageOutput(images=[4 PIL images 16x16], ids=tensor(4, 4, 4), prompts=4)"


def test_an_option_the_sampler_ignores_is_said_not_dropped_silently(pipe, recwarn):
    with pytest.warns(UserWarning, match=r"top_k=5, top_p=0.9 has no effect with sampler 'greedy'"):
        pipe("a red circle", sampler="greedy", top_k=5, top_p=0.9)
    with pytest.warns(UserWarning, match=r"temperature=0.7 has no effect with sampler 'beam'"):
        pipe("a red circle", sampler="beam", beam_width=2, temperature=0.7)
    with pytest.warns(UserWarning, match=r"beam_width=3 has no effect with sampler 'greedy'"):
        pipe("a red circle", sampler="greedy", beam_width=3)
    recwarn.clear()
    pipe("a red circle", sampler="sample", top_k=5, generator=torch.Generator().manual_seed(0))
    pipe("a red circle", sampler="beam_sample", beam_width=2, temperature=0.7, top_k=5)
    pipe("a red circle", sampler="greedy")  # the checkpoint's default top-k is not the caller's: nothing to say
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_a_warm_start_counts_the_steps_of_every_earlier_run(tmp_path):
    import json as _json

    from tools.train.init import prior_training

    (tmp_path / "training.json").write_text(_json.dumps({"ar": {"steps": 1900, "train_seconds": 9648.3,
                                                                "init_from": {"steps": 4000, "train_seconds": 6536}}}))
    record = prior_training(tmp_path, "ar")
    assert (record.steps, record.train_seconds) == (5900, 9648.3)  # both in all, not the last run's alone


def test_training_with_a_given_caption_tokenizer_keeps_it(training_data, tmp_path, tokenizer):
    folder, images, captions = training_data
    preset = tiny_preset(max_steps=2)
    pipeline_dir = train_ar(preset, folder / "vq", images, captions, tmp_path / "run", progress=False,
                            caption_tokenizer=tokenizer)
    assert (pipeline_dir / "caption_tokenizer" / "spiece.model").read_bytes() == tokenizer.model_proto
    with pytest.raises(ValueError, match="keeps its own caption tokenizer"):
        train_ar(preset, None, images, captions, tmp_path / "warm", progress=False, init_from=tmp_path / "x",
                 caption_tokenizer=tokenizer)


def test_the_cli_offers_every_sampler_and_schedule_of_the_library():
    from ar_model.sampling import GUIDANCE_SCHEDULES, SAMPLERS
    from tools.cli import args
    assert args.SAMPLERS == SAMPLERS and args.GUIDANCE_SCHEDULES == GUIDANCE_SCHEDULES


def test_beam_sample_images_follow_their_generators(pipe):
    settings = dict(sampler="beam_sample", beam_width=3, temperature=1.0, top_k=0, guidance_scale=2.0)
    gens = (lambda *seeds: [torch.Generator().manual_seed(s) for s in seeds])
    out = pipe(["a red circle"] * 3, generator=gens(0, 1, 0), **settings)
    assert torch.equal(out.ids[0], out.ids[2]) and not torch.equal(out.ids[0], out.ids[1])
    assert out.log_probs.shape == (3,) and torch.isfinite(out.log_probs).all()
