"""Train the decoder with ``accelerate``: one process here, DDP under ``accelerate launch``.

Before the first step the run prepares its data once, in ``out_dir``: a caption tokenizer trained on the
captions, and every image encoded to VQ codes (``tokens.safetensors``). Then it trains next-token prediction
on the image codes (and EOI), with captions swapped for the null caption with probability ``caption_dropout``
for classifier-free guidance. Resumable to the step like the VQ trainer: the batch and the dropout mask at
step ``t`` are pure functions of (seed, t), and the checkpoint holds model, optimizer and RNG.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from ar_model.model import ARDecoder
from ar_model.pipeline import TextToImage
from ar_model.sequence import caption_prefixes, null_prefixes, training_sequences
from ar_model.text_tokenizer import CaptionTokenizer
from vq.model import VQModel
from vq.pretrained import atomic_path

from tools.codes import CodeShards, weights_digest

from .captions import add_skips, caption_world, encode_captions
from .config import ARPreset
from .init import InitRecord, load_init_weights, prior_training
from .loop import RunOptions, TrainTask, batch_indices, open_run, step_generator, train_loop

TOKENS_NAME = "tokens.safetensors"


@torch.no_grad()
def encode_images(vq: VQModel, images: torch.Tensor, batch_size: int = 256, progress: bool = True) -> torch.Tensor:
    """uint8 images (N, 3, S, S) -> VQ codes (N, h * w) as int16."""
    out = []
    for start in tqdm(range(0, len(images), batch_size), desc="encoding images", disable=not progress):
        ids = vq.encode(images[start:start + batch_size].float().div(255))
        out.append(ids.flatten(1).to(torch.int16))
    return torch.cat(out)


def prepare_data(preset: ARPreset, vq: VQModel, images: torch.Tensor | None, captions: list[str], out_dir: Path,
                 progress: bool = True, tokenizer: CaptionTokenizer | None = None, keys: list[str] | None = None,
                 strict: bool = False) -> list[tuple[str, str]]:
    """Train the caption tokenizer (unless ``tokenizer`` is given: a warm start keeps its own) and encode the
    data; both written atomically into ``out_dir``. ``images`` None: the codes are pre-extracted
    (``tools.codes``), and the token file holds the rows of them to train on instead. A caption over the token
    limit is skipped with its image (under ``strict``, an error); returns the skipped samples' (key, why)."""
    cfg = preset.train
    max_tokens = preset.model.max_caption_tokens
    if tokenizer is None:
        tokenizer = CaptionTokenizer.train(captions, cfg.text_vocab_size, max_tokens)
    pieces, kept, skipped = encode_captions(tokenizer, captions, keys, strict)
    caption_ids = torch.full((len(kept), max_tokens), -1, dtype=torch.int16)
    for row, ids in enumerate(pieces):
        caption_ids[row, :len(ids)] = torch.tensor(ids, dtype=torch.int16)
    # num_images: how many samples the data had, to check a resumed run's data
    tensors = {"caption_ids": caption_ids, "num_images": torch.tensor(len(captions))}
    if images is None:
        tensors["rows"] = torch.tensor(kept, dtype=torch.int64)
    else:
        tensors["codes"] = encode_images(vq, images[kept] if skipped else images, progress=progress)
    with atomic_path(out_dir / TOKENS_NAME) as tmp:
        save_file(tensors, str(tmp))
    tokenizer.save_pretrained(out_dir / "caption_tokenizer")  # written last: its presence marks the data ready
    return skipped


def _prefixes(config, caption_ids: torch.Tensor) -> torch.Tensor:
    return caption_prefixes(config, [row[row >= 0].tolist() for row in caption_ids])


def training_model(config, cfg) -> tuple[ARDecoder, torch.optim.Optimizer]:
    """A fresh decoder set up as ``cfg`` trains it (dropout, head init) and its AdamW optimizer."""
    model = ARDecoder(config)
    model.dropout = cfg.dropout
    if cfg.zero_init_head:
        torch.nn.init.zeros_(model.lm_head.weight)
    # No weight decay on norms and embeddings (nanoGPT's grouping: decay only matrices that multiply).
    decay = [p for n, p in model.named_parameters() if p.ndim == 2 and "embed" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim == 2 and "embed" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, betas=cfg.betas)
    return model, optimizer


def training_forward(model: ARDecoder, cfg) -> torch.nn.Module:
    """What a training step calls: the decoder, or its ``torch.compile``d version when ``cfg.compile``."""
    return torch.compile(model, dynamic=False) if cfg.compile else model


def sequence_loss(config, cfg, logits: torch.Tensor, seq: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """Next-token loss on what follows BOI. logits (B, T - 1, V) of seq (B, T)."""
    logits, targets = logits[:, config.prefix_len - 1:].float(), seq[:, config.prefix_len:]
    if cfg.image_only_loss:
        is_code = targets >= config.image_offset
        logits = logits[is_code][:, config.image_offset:config.image_offset + config.codebook_size]
        targets = targets[is_code] - config.image_offset
    else:
        logits, targets = logits.reshape(-1, config.vocab_size), targets.reshape(-1)
    loss = F.cross_entropy(logits, targets)
    fields = {}
    if cfg.z_loss:
        z = logits.logsumexp(-1).pow(2).mean()
        loss, fields = loss + cfg.z_loss * z, {"z": z.item()}
    return loss, fields


def _warm_start(init_from: Path, vq_dir: str | Path | None) -> tuple[TextToImage, VQModel, InitRecord]:
    """The pipeline a warm start continues, the VQ tokenizer the run encodes with (the pipeline's; a ``vq_dir``
    given as well must hold the same weights) and what the decoder had cost."""
    init = TextToImage.from_pretrained(init_from)
    if vq_dir is not None:
        given = VQModel.from_pretrained(vq_dir)
        if given.config != init.vq.config or weights_digest(given) != weights_digest(init.vq):
            raise ValueError(f"--vq: {str(vq_dir)!r} is not the VQ tokenizer of the --init-from pipeline "
                             f"{str(init_from)!r}; its decoder reads that one's codes (leave --vq out to use it)")
    return init, init.vq, prior_training(Path(init_from), "ar")


def train_ar(preset: ARPreset, vq_dir: str | Path | None, images: torch.Tensor | None, captions: list[str] | None,
             out_dir: str | Path, max_minutes: float | None = None, resume: bool = False,
             stop_after: int | None = None, progress: bool = True, init_from: str | Path | None = None,
             keys: list[str] | None = None, strict: bool = False, code_shards: CodeShards | None = None,
             caption_tokenizer: CaptionTokenizer | None = None) -> Path:
    """Train on ``images`` (uint8 (N, 3, S, S)) and their ``captions``; writes the pipeline to
    ``out_dir/pipeline`` and returns its path. ``stop_after`` ends the run after that many steps as if killed.
    ``init_from`` (a pipeline folder) warm-starts the decoder from its weights, with its VQ and caption
    tokenizers (``tools.train.init``); ``vq_dir`` may then be None. A caption over the token limit is skipped
    and added, by its ``keys`` entry, to ``out_dir/data.json`` (``strict``: an error). ``code_shards`` (codes
    pre-extracted by ``t2i data encode``, read from disk a batch at a time) replaces ``images`` and
    ``captions``. ``caption_tokenizer`` is used instead of training one (so that a new decoder can share a
    release's tokenizer, and a diffusion baseline trained with it)."""
    cfg = preset.train
    if caption_tokenizer is not None and init_from is not None:
        raise ValueError("a warm start keeps its own caption tokenizer: give init_from or caption_tokenizer, not both")
    if caption_tokenizer is not None:  # the model's caption length rules, as for a tokenizer trained here
        caption_tokenizer = CaptionTokenizer(caption_tokenizer.model_proto, preset.model.max_caption_tokens)
    if vq_dir is None and init_from is None:
        raise ValueError("give the VQ tokenizer (vq_dir) or a pipeline to start from (init_from)")
    init, init_record = None, None
    if init_from is not None:
        init, vq, init_record = _warm_start(Path(init_from), vq_dir)
    run = open_run(out_dir, RunOptions(max_minutes, resume, stop_after, progress))
    accelerator, out_dir = run.accelerator, run.out_dir
    if init is None:
        vq = VQModel.from_pretrained(vq_dir)
    if code_shards is not None:
        code_shards.check_tokenizer(vq)
        num_images = len(code_shards)
    else:
        if len(images) != len(captions):
            raise ValueError(f"got {len(images)} images but {len(captions)} captions")
        if tuple(images.shape[1:]) != (3, vq.config.image_size, vq.config.image_size) or images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, 3, {vq.config.image_size}, {vq.config.image_size}) for the "
                             f"VQ tokenizer in {str(vq_dir)!r}, got {images.dtype} {tuple(images.shape)}")
        num_images = len(images)
    if accelerator.is_main_process and not (out_dir / "caption_tokenizer").is_dir():
        if code_shards is not None:
            captions, keys = code_shards.captions_and_keys()
        skipped = prepare_data(preset, vq, images if code_shards is None else None, captions, out_dir, progress,
                               init.caption_tokenizer if init else caption_tokenizer, keys, strict)
        add_skips(out_dir / "data.json", skipped)
    accelerator.wait_for_everyone()
    tokenizer = CaptionTokenizer.from_pretrained(out_dir / "caption_tokenizer")
    if caption_tokenizer is not None and tokenizer.model_proto != caption_tokenizer.model_proto:
        raise ValueError(f"{out_dir / 'caption_tokenizer'} is not the caption tokenizer given: resume with the one the "
                         "run started with, or choose another --out")
    data = load_file(str(out_dir / TOKENS_NAME))
    prepared_from = int(data["num_images"]) if "num_images" in data else len(data["codes"])
    if prepared_from != num_images or ("rows" in data) != (code_shards is not None):
        raise ValueError(f"{out_dir / TOKENS_NAME} was made from {prepared_from} "
                         f"{'pre-extracted codes' if 'rows' in data else 'images'} but {num_images} "
                         f"{'pre-extracted codes' if code_shards is not None else 'images'} were given; resume "
                         "with the same data or choose another --out")
    config = preset.model_config(tokenizer.vocab_size, vq.config.vocab_size, vq.config.grid_size)
    caption_ids = data["caption_ids"]
    if code_shards is None:
        codes_at = data["codes"].__getitem__
    else:  # read from the memory-mapped shards, a batch at a time
        rows = data["rows"]
        codes_at = lambda idx: code_shards.codes[rows[idx]]  # noqa: E731
    null = null_prefixes(config, 1)

    set_seed(cfg.seed)
    model, optimizer = training_model(config, cfg)
    if init is not None:  # a resumed run then loads its checkpoint over these
        load_init_weights(model, init.decoder, "decoder")
    device = accelerator.device
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if cfg.bf16 else contextlib.nullcontext())

    # Compiled once, on the first step, around the model accelerate prepared (the same object every step).
    forward_of = functools.cache(lambda prepared: training_forward(prepared, cfg))

    def compute_loss(model, step, rank, world):
        idx = batch_indices(cfg.seed, step, len(caption_ids), cfg.batch_size)
        drop = torch.rand(cfg.batch_size, generator=step_generator(cfg.seed, step))
        idx, drop = idx[rank::world], drop[rank::world] < cfg.caption_dropout
        prefix = torch.where(drop[:, None], null, _prefixes(config, caption_ids[idx]))
        seq = training_sequences(config, prefix, codes_at(idx).long()).to(device)
        with autocast:
            logits = forward_of(model)(seq[:, :-1])
        return sequence_loss(config, cfg, logits, seq)

    pipeline_dir = out_dir / "pipeline"
    if captions is None:
        captions, _ = code_shards.captions_and_keys()
    world = caption_world(captions, f"the captions of {num_images} training images")
    train_loop(run, model, optimizer, cfg, TrainTask(
        "train ar", {"model": config.to_dict(), "train": cfg.to_dict()}, compute_loss,
        lambda m: TextToImage(vq, tokenizer, m, prompt_world=world).save_pretrained(pipeline_dir), init=init_record))
    return pipeline_dir
