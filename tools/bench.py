"""Benchmarks that print JSON. Variants are interleaved in one run, so a noisy shared machine slows all alike."""

from __future__ import annotations

import os
import platform
import time

from tools.shards import png_bytes, scene_seed
from tools.world import caption, render, sample_scene


def bench_data(num: int, sizes: list[int], rounds: int = 5) -> dict:
    """Scenes per second for sample + render + caption + PNG encode, at each canvas size."""
    elapsed = {size: 0.0 for size in sizes}
    for size in sizes:  # warm-up: font loading and caches
        png_bytes(render(sample_scene(0), size))
    per_round = max(1, num // rounds)
    for r in range(rounds):
        for size in sizes:
            start = time.perf_counter()
            for i in range(per_round):
                scene = sample_scene(scene_seed(r, "bench", i))
                caption(scene)
                png_bytes(render(scene, size))
            elapsed[size] += time.perf_counter() - start
    n = per_round * rounds
    result = {
        f"{size}px": {"scenes": n, "seconds": round(elapsed[size], 3), "scenes_per_s": round(n / elapsed[size], 1)}
        for size in sizes
    }
    base = sizes[0]
    return {
        "benchmark": "data",
        "what": "sample_scene + caption + render + PNG encode, one process",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "results": result,
        # How many times longer a scene takes than at the first size, from the same interleaved run.
        f"time_ratio_vs_{base}px": {
            f"{s}px": round(result[f"{base}px"]["scenes_per_s"] / result[f"{s}px"]["scenes_per_s"], 2) for s in sizes
        },
    }
