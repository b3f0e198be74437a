"""A probe for a lever (docs/recipe.md, section 10): does the best of N samples, picked by the decoder's own
teacher-forced caption likelihood, pass the judge more often than one sample?

    python -m tools.rerank_probe --checkpoint checkpoints/tiny --candidates 4 --per-category 10 --seed 7 \\
        --out runs/rerank-n4-s7.json

For each prompt (``t2i prompts --category all``), N images at the pipeline's default settings (image seeds
1000 + 100 * prompt + j), each judged, with log p(codes | caption) and log p(codes | null caption) in nats. The
JSON holds every candidate, so any picking rule (first, likelihood, PMI with a weight, oracle) is scored from one
run without generating again; ``summary`` gives those rules' per-category pass rates.
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ar_model.pipeline import TextToImage
from tools.ar_eval import code_log_likelihood, swap_colours
from tools.judge.verdict import score
from tools.prompts import make_prompts
from tools.world import category_of, format_caption, parse_caption
from vq.pretrained import write_text


def probe(pipe: TextToImage, candidates: int, per_category: int, seed: int, batch_prompts: int = 8,
          category: str = "all") -> list[dict]:
    """Every candidate of every prompt, ``batch_prompts`` prompts per decoder call (image seeds do not depend
    on the batching, so a smaller batch gives the same candidates up to float rounding). Colour-attribution
    prompts also get log p(codes | the caption with its colours swapped between the shapes)."""
    prompts = make_prompts(category, per_category, seed)
    rows = []
    for start in tqdm(range(0, len(prompts), batch_prompts), desc="prompts"):
        chunk = prompts[start: start + batch_prompts]
        gens = [torch.Generator().manual_seed(1000 + i * 100 + j)
                for i in range(start, start + len(chunk)) for j in range(candidates)]
        out = pipe(chunk, num_images_per_prompt=candidates, generator=gens)
        codes = out.ids.flatten(1)
        repeated = [p for p in chunk for _ in range(candidates)]
        with torch.no_grad():
            cond = code_log_likelihood(pipe, repeated, codes)
            null = code_log_likelihood(pipe, None, codes)
            parsed = [parse_caption(p) for p in repeated]
            binding = [category_of(r) == "colour_attribution" for r in parsed]
            picked = [i for i, b in enumerate(binding) if b]  # only these have a swap to score
            swapped = {}
            if picked:
                nats = code_log_likelihood(pipe, [format_caption(swap_colours(parsed[i])) for i in picked],
                                           codes[picked])
                swapped = dict(zip(picked, nats.tolist()))
        verdicts = [score(image, caption) for image, caption in zip(out.images, repeated)]
        for k, prompt in enumerate(chunk):
            sl = slice(k * candidates, (k + 1) * candidates)
            row = {"prompt": prompt, "category": verdicts[sl][0].category, "cond_nats": cond[sl].tolist(),
                   "null_nats": null[sl].tolist(), "passed": [v.passed for v in verdicts[sl]]}
            if binding[k * candidates]:
                row["swapped_nats"] = [swapped[i] for i in range(sl.start, sl.stop)]
            rows.append(row)
    return rows


def pick_rates(rows: list[dict], pick) -> dict:
    """Per-category pass rate of the candidate ``pick(row)`` chooses, and their mean (the judge's overall)."""
    by_category = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row["passed"][pick(row)])
    categories = {c: sum(v) / len(v) for c, v in by_category.items()}
    return {"overall": sum(categories.values()) / len(categories), "categories": categories}


def summary(rows: list[dict]) -> dict:
    n = len(rows[0]["passed"])
    rules = {"first sample": lambda r: 0,
             "oracle (any candidate passes)": lambda r: max(range(n), key=lambda j: r["passed"][j])}
    for weight in (0.0, 0.5, 1.0):
        rules[f"max log p(codes|caption) - {weight} log p(codes|null)"] = (
            lambda r, w=weight: max(range(n), key=lambda j: r["cond_nats"][j] - w * r["null_nats"][j]))
    if all("swapped_nats" in r for r in rows):  # colour attribution only: the caption against its swap
        rules["max log p(codes|caption) - log p(codes|colours swapped)"] = (
            lambda r: max(range(n), key=lambda j: r["cond_nats"][j] - r["swapped_nats"][j]))
    out = {name: pick_rates(rows, rule) for name, rule in rules.items()}
    out["mean over candidates"] = {"overall": sum(
        pick_rates(rows, lambda r, j=j: j)["overall"] for j in range(n)) / n}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("checkpoints/tiny"))
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--per-category", type=int, default=10)
    parser.add_argument("--category", default="all", help="a prompt category, or all (default)")
    parser.add_argument("--seed", type=int, default=7, help="prompt seed")
    parser.add_argument("--batch-prompts", type=int, default=8, help="prompts per decoder call")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    pipe = TextToImage.from_pretrained(args.checkpoint, torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    rows = probe(pipe, args.candidates, args.per_category, args.seed, args.batch_prompts, args.category)
    report = {"checkpoint": str(args.checkpoint), "candidates": args.candidates, "seed": args.seed,
              "summary": summary(rows), "rows": rows}
    write_text(args.out, json.dumps(report, indent=1))
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
