"""A real two-process CPU run of the trainer under ``accelerate launch`` (DDP over gloo)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tools.shards import make_shards
from tools.world.config import WorldConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
                    reason="accelerate's launcher is not installed")
def test_two_process_vq_training(tmp_path):
    make_shards(tmp_path / "data", 16, WorldConfig.from_preset("tiny"), progress=False)
    preset = {"model": {"image_size": 64, "base_channels": 8, "channel_mult": [1, 2, 2], "latent_dim": 8,
                        "codebook_size": 32, "codebook_dim": 4},
              "train": {"batch_size": 4, "max_steps": 3, "warmup_steps": 1, "log_every": 1, "num_train": 16}}
    (tmp_path / "preset.json").write_text(json.dumps(preset))
    launcher = Path(sys.executable).parent / "accelerate"
    # `--cpu` would start one process: accelerate hands multi-CPU runs to mpirun. `--multi_gpu` starts them with
    # torchrun, and with no GPU the trainer asks accelerate for the CPU, so the two join one gloo group.
    cmd = [str(launcher) if launcher.exists() else "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "tools.cli", "train", "vq", "--preset", str(tmp_path / "preset.json"),
           "--data", str(tmp_path / "data"), "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    weights = {}
    for rank in (0, 1):
        weights[rank] = (tmp_path / "run" / f"weights-rank{rank}.sha256").read_text()
    assert weights[0] == weights[1]  # DDP kept the two replicas (and the EMA codebooks) identical
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]  # one log per step, from the main process only
