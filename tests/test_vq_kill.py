"""A training run killed with SIGKILL resumes from its last checkpoint and repeats the uninterrupted losses: the
VQ trainer on images, and the decoder's reading pre-extracted codes from disk."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tools.shards import make_shards
from tools.world.config import WorldConfig

REPO = Path(__file__).resolve().parents[1]
PRESET = {"model": {"image_size": 64, "base_channels": 8, "channel_mult": [1, 2, 2], "latent_dim": 8,
                    "codebook_size": 32, "codebook_dim": 4},
          "train": {"batch_size": 4, "max_steps": 16, "warmup_steps": 2, "log_every": 1, "checkpoint_every": 4,
                    "num_train": 32}}


# The run kills itself with SIGKILL when it is about to train step 14 (0-based 13), after it logged step 13 and
# checkpointed step 12: a real SIGKILL at a fixed point, so the test cannot race a run that finishes between
# two polls. Nothing in the trainer knows about it; the patch lives in this launcher only.
KILL_AT = 13
LAUNCHER = f"""
import importlib, os, signal, sys
from tools.cli import main

trainer = importlib.import_module("tools.train." + sys.argv[2])

real = trainer.batch_indices

def batch_indices(seed, step, *rest):
    if step == {KILL_AT} and os.environ.get("KILL_RUN"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(seed, step, *rest)

trainer.batch_indices = batch_indices
sys.exit(main(sys.argv[1:]))
"""


def train(tmp_path: Path, out: str, *extra: str, kill: bool = False, model: str = "vq",
          data: tuple[str, ...] = ()) -> subprocess.Popen:
    data = data or ("--data", str(tmp_path / "data"))
    cmd = [sys.executable, "-c", LAUNCHER, "train", model, "--preset", str(tmp_path / "preset.json"), *data,
           "--out", str(tmp_path / out), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "KILL_RUN": "1" if kill else ""}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def losses(path: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, path.read_text().splitlines())]


def test_sigkill_then_resume(tmp_path):
    make_shards(tmp_path / "data", 32, WorldConfig.from_preset("tiny"), progress=False)
    (tmp_path / "preset.json").write_text(json.dumps(PRESET))
    assert train(tmp_path, "full").wait(timeout=300) == 0

    run = train(tmp_path, "killed", kill=True)
    assert run.wait(timeout=300) == -signal.SIGKILL
    metrics = tmp_path / "killed" / "metrics.jsonl"
    assert losses(metrics)[-1][0] == KILL_AT and not (tmp_path / "killed" / "model").exists()

    assert train(tmp_path, "killed", "--resume").wait(timeout=300) == 0
    full = dict(losses(tmp_path / "full" / "metrics.jsonl"))
    resumed = losses(metrics)
    # Every logged step, before the kill and after the resume (which restarts at the last checkpoint), has the
    # loss of the uninterrupted run: same data order, same optimizer and RNG state.
    assert [step for step, _ in resumed] == [*range(1, KILL_AT + 1), *range(13, 17)]  # step 13 ran twice
    assert all(loss == full[step] for step, loss in resumed)


def test_sigkill_then_resume_decoder_reading_codes(tmp_path):
    import torch

    from tools.codes import encode_source
    from vq.config import VQConfig
    from vq.model import VQModel

    make_shards(tmp_path / "data", 32, WorldConfig.from_preset("tiny"), progress=False)
    torch.manual_seed(0)
    vq = VQModel(VQConfig(image_size=64, base_channels=8, channel_mult=(1, 2, 2, 2, 2), latent_dim=8,
                          codebook_size=32, codebook_dim=4, kmeans_init=False)).eval()
    vq.save_pretrained(tmp_path / "vq")
    encode_source(str(tmp_path / "data"), vq, tmp_path / "codes", shard_size=10, progress=False)
    (tmp_path / "preset.json").write_text(json.dumps({
        "model": {"max_caption_tokens": 64, "dim": 32, "n_layers": 1, "n_heads": 4, "n_kv_heads": 2},
        "train": {"batch_size": 4, "max_steps": 16, "warmup_steps": 2, "log_every": 1, "checkpoint_every": 4,
                  "text_vocab_size": 320, "caption_dropout": 0.5}}))
    codes = ("--vq", str(tmp_path / "vq"), "--codes", str(tmp_path / "codes"))
    assert train(tmp_path, "full", model="ar", data=codes).wait(timeout=300) == 0
    run = train(tmp_path, "killed", kill=True, model="ar", data=codes)
    assert run.wait(timeout=300) == -signal.SIGKILL
    metrics = tmp_path / "killed" / "metrics.jsonl"
    assert losses(metrics)[-1][0] == KILL_AT and not (tmp_path / "killed" / "pipeline").exists()
    assert train(tmp_path, "killed", "--resume", model="ar", data=codes).wait(timeout=300) == 0
    full, resumed = dict(losses(tmp_path / "full" / "metrics.jsonl")), losses(metrics)
    # What a resume repeats: the steps after the last checkpoint (13, after checkpoint 12), with the same losses.
    assert [step for step, _ in resumed] == [*range(1, KILL_AT + 1), *range(13, 17)]
    assert all(loss == full[step] for step, loss in resumed)
