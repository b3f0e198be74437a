"""A training run killed with SIGKILL resumes from its last checkpoint and repeats the uninterrupted losses."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tools.shards import make_shards
from tools.world.config import WorldConfig

REPO = Path(__file__).resolve().parents[1]
PRESET = {"model": {"image_size": 64, "base_channels": 8, "channel_mult": [1, 2, 2], "latent_dim": 8,
                    "codebook_size": 32, "codebook_dim": 4},
          "train": {"batch_size": 4, "max_steps": 16, "warmup_steps": 2, "log_every": 1, "checkpoint_every": 4,
                    "num_train": 32}}


def train(tmp_path: Path, out: str, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tools.cli", "train", "vq", "--preset", str(tmp_path / "preset.json"),
           "--data", str(tmp_path / "data"), "--out", str(tmp_path / out), *extra]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def losses(path: Path) -> list[tuple[int, float]]:
    return [(r["step"], r["loss"]) for r in map(json.loads, path.read_text().splitlines())]


def test_sigkill_then_resume(tmp_path):
    make_shards(tmp_path / "data", 32, WorldConfig.from_preset("tiny"), progress=False)
    (tmp_path / "preset.json").write_text(json.dumps(PRESET))
    assert train(tmp_path, "full").wait(timeout=300) == 0

    run = train(tmp_path, "killed")
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (metrics.exists() and len(metrics.read_text().splitlines()) >= 10):
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    killed_at = losses(metrics)[-1][0]
    assert 10 <= killed_at < 16 and not (tmp_path / "killed" / "model").exists()

    assert train(tmp_path, "killed", "--resume").wait(timeout=300) == 0
    full = dict(losses(tmp_path / "full" / "metrics.jsonl"))
    resumed = losses(metrics)
    # Every logged step, before the kill and after the resume (which restarts at the last checkpoint), has the
    # loss of the uninterrupted run: same data order, same optimizer and RNG state.
    assert {step for step, _ in resumed} == set(range(1, 17))
    assert all(loss == full[step] for step, loss in resumed)
