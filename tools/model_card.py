"""The model card (``README.md``) that ``t2i release`` writes into a released folder: what the models are, what
they were trained on and for how long, how they score, and what they cannot do. Built only from records (the
runs' ``training.json`` and presets, ``pipeline.json``'s defaults, and judge reports given to the release), so a
card says nothing its folder cannot back."""

from __future__ import annotations

from tools.world.vocab import CATEGORIES

LIMITS = """\
- It draws the project's synthetic scene world only (docs/world.md: 8 colours, 4 shapes, 2 sizes, a 3x3 grid,
  counts, relations, capital-letter words) at the resolution above; any other prompt gives a picture of that
  world at best. Prompts the grammar does not parse cannot be scored.
- The figures above are what these weights score, measured as the table says; a bar the project sets for the
  model (the README's) is met only where a figure says so.
- No weights or data from outside the project went into it; it knows nothing of the real world."""


def _hours(seconds: float) -> str:
    return f"{seconds:.0f} s ({seconds / 3600:.2f} h)"


def _training_lines(name: str, record: dict | None) -> list[str]:
    if not record:
        return [f"- **{name}**: no training record"]
    processes = record.get("processes", 1)
    init = record.get("init_from")
    steps = record.get("steps", "?") if not init else f"{init['steps'] + record['steps']} ({init['steps']} + {record['steps']})"
    lines = [f"- **{name}**: {steps} steps in {processes} process{'es' if processes > 1 else ''}; "
             f"training time {_hours(record['train_seconds'])} in all" if "train_seconds" in record else
             f"- **{name}**: {record.get('steps', '?')} steps"]
    if init:  # warm-started: the chain of runs the time adds up
        lines.append(f"  - continued from `{init['path']}` ({init['steps']} steps, {_hours(init['train_seconds'])}), "
                     f"then {record['steps']} more steps")
    train = record.get("preset_train")
    if train:
        keys = ("batch_size", "lr", "warmup_steps", "max_steps", "num_train", "bf16", "compile")
        lines.append("  - run: " + ", ".join(f"{k} {train[k]}" for k in keys if k in train))
    return lines


def _score_table(label: str, report: dict) -> list[str]:
    categories = report["categories"]
    head = ["category", *[c for c in CATEGORIES if c in categories], "overall", "word acc.", "CER"]
    text = report.get("text", {})
    row = [label, *[f"{categories[c]['pass_rate']:.2f}" for c in CATEGORIES if c in categories],
           f"{report['overall']:.3f}", f"{text.get('word_accuracy', float('nan')):.2f}",
           f"{text.get('cer', float('nan')):.2f}"]
    return [f"| {' | '.join(head)} |", f"|{'---|' * len(head)}", f"| {' | '.join(row)} |"]


def model_card(name: str, components: list[str], image_size: int, training: dict, defaults: dict,
               scores: dict[str, dict]) -> str:
    """The card's Markdown. ``scores``: a label (how the images were made) -> a ``t2i score`` report."""
    out = [f"# {name}", "",
           f"An autoregressive text-to-image pipeline of the t2i-ar project: {', '.join(components)}, in float16. "
           f"It draws {image_size} px pictures of the project's synthetic scene world.", "",
           "```python", "from ar_model import TextToImage", "", f'pipe = TextToImage.from_pretrained("{name}")',
           'image = pipe("a red circle at the top left").images[0]', "```", "",
           "## Defaults", "",
           "A call that names no sampler gets these (pipeline.json, the best measured settings): " +
           ", ".join(f"{k} {v}" for k, v in defaults.items()) + ".", "",
           "## Training", "",
           "Trained on the project's own scene world (`t2i data make`), nothing downloaded: from scratch, or "
           "continued from an earlier run where a line says so. The commands, data and every variant tried are in "
           "the repository's docs/recipe.md.", ""]
    for key, label in (("ar", "decoder"), ("refiner", "refiner"), ("baseline", "diffusion baseline")):
        if key in training:
            out += _training_lines(label, training[key])
    out += ["", "## How it scores", ""]
    if scores:
        for label, report in scores.items():
            out += [f"`t2i score` on {report['num_prompts']} prompts, {report['num_images']} images; {label}:", ""]
            out += _score_table(label.split(",")[0], report) + [""]
    else:
        out += ["No judge report was given to this release.", ""]
    out += ["## Limits", "", LIMITS, ""]
    return "\n".join(out)
