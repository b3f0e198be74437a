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
    data = ["--data", str(tmp_path / "data")]
    launcher = Path(sys.executable).parent / "accelerate"
    # `--cpu` would start one process: accelerate hands multi-CPU runs to mpirun. `--multi_gpu` starts them with
    # torchrun, and with no GPU the trainer asks accelerate for the CPU, so the two join one gloo group.
    cmd = [str(launcher) if launcher.exists() else "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "tools.cli", "train", "vq", "--preset", str(tmp_path / "preset.json"),
           *data, "--out", str(tmp_path / "run")]
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


@pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
                    reason="accelerate's launcher is not installed")
@pytest.mark.parametrize("source", ["data", "codes"])
def test_two_process_ar_training(tmp_path, source):
    """Two CPU processes under accelerate launch, reading the images or the codes 't2i data encode' extracted
    (each process reads its share of every global batch from the memory-mapped shards): identical replicas."""
    import torch

    from vq.config import VQConfig
    from vq.model import VQModel

    make_shards(tmp_path / "data", 16, WorldConfig.from_preset("tiny"), progress=False)
    torch.manual_seed(0)
    VQModel(VQConfig(image_size=64, base_channels=8, channel_mult=(1, 2, 2, 2, 2), latent_dim=8, codebook_size=32,
                     codebook_dim=4, kmeans_init=False)).save_pretrained(tmp_path / "vq")
    preset = {"model": {"max_caption_tokens": 64, "dim": 32, "n_layers": 2, "n_heads": 4, "n_kv_heads": 2},
              "train": {"batch_size": 4, "max_steps": 3, "warmup_steps": 1, "log_every": 1, "num_train": 16,
                        "text_vocab_size": 320, "bf16": False}}
    (tmp_path / "preset.json").write_text(json.dumps(preset))
    data = ["--data", str(tmp_path / "data")]
    if source == "codes":
        from tools.codes import encode_source

        vq = VQModel.from_pretrained(tmp_path / "vq").eval()
        encode_source(str(tmp_path / "data"), vq, tmp_path / "codes", shard_size=5, progress=False)
        data = ["--codes", str(tmp_path / "codes")]
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [str(launcher) if launcher.exists() else "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "tools.cli", "train", "ar", "--preset", str(tmp_path / "preset.json"), "--vq", str(tmp_path / "vq"),
           *data, "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [(tmp_path / "run" / f"weights-rank{rank}.sha256").read_text() for rank in (0, 1)]
    assert digests[0] == digests[1]  # both processes hold identical decoder weights
    assert (tmp_path / "run" / "pipeline" / "decoder" / "model.safetensors").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]


DIFFUSION_PRESETS = {  # 64 px, as the world shards are drawn; a few thousand parameters
    "refiner": {"model": {"image_size": 64, "block_out_channels": [8, 16], "layers_per_block": 1,
                          "norm_num_groups": 4},
                "train": {"batch_size": 4, "max_steps": 3, "warmup_steps": 1, "log_every": 1, "num_train": 16}},
    "diffusion": {"model": {"image_size": 64, "block_out_channels": [8, 16], "layers_per_block": 1,
                            "norm_num_groups": 4, "attention_head_dim": 8, "max_caption_tokens": 32, "text_dim": 16,
                            "text_layers": 1, "text_heads": 2},
                  "train": {"batch_size": 4, "max_steps": 3, "warmup_steps": 1, "log_every": 1, "num_train": 16}},
}


@pytest.mark.skipif(shutil.which("accelerate") is None and not (Path(sys.executable).parent / "accelerate").exists(),
                    reason="accelerate's launcher is not installed")
@pytest.mark.parametrize("kind", ["refiner", "diffusion"])
def test_two_process_refiner_and_baseline_from_codes(tmp_path, kind, tokenizer):
    """The refiner and the diffusion baseline under accelerate launch, each process reading its share of every
    global batch from code shards encoded with their images (the refiner decodes its batch's reconstructions
    from the codes): identical replicas at the end."""
    import torch

    from tools.codes import encode_source
    from vq.config import VQConfig
    from vq.model import VQModel

    make_shards(tmp_path / "data", 16, WorldConfig.from_preset("tiny"), progress=False)
    torch.manual_seed(0)
    vq = VQModel(VQConfig(image_size=64, base_channels=8, channel_mult=(1, 2, 2, 2, 2), latent_dim=8,
                          codebook_size=32, codebook_dim=4, kmeans_init=False)).eval()
    vq.save_pretrained(tmp_path / "vq")
    tokenizer.save_pretrained(tmp_path / "tok")
    encode_source(str(tmp_path / "data"), vq, tmp_path / "codes", shard_size=5, with_images=True, progress=False)
    (tmp_path / "preset.json").write_text(json.dumps(DIFFUSION_PRESETS[kind]))
    needs = ["--vq", str(tmp_path / "vq")] if kind == "refiner" else ["--tokenizer", str(tmp_path / "tok")]
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [str(launcher) if launcher.exists() else "accelerate", "launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "tools.cli", "train", kind, "--preset", str(tmp_path / "preset.json"), *needs,
           "--codes", str(tmp_path / "codes"), "--out", str(tmp_path / "run")]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    digests = [(tmp_path / "run" / f"weights-rank{rank}.sha256").read_text() for rank in (0, 1)]
    assert digests[0] == digests[1]
    assert (tmp_path / "run" / "model" / "model.safetensors").exists()
    steps = [json.loads(line)["step"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3]
