"""The ``t2i`` command: argument parsing only; the work lives in the modules it calls.

Each command group registers its own sub-parser next to its handlers (``world``, ``data``, ``score``, ``train``,
``evaluate``, ``generate``, ``edit``, ``export``, ``compare``, ``release``, ``bench``); what they share is in
``args``. Handlers import their libraries when they run, so ``t2i --help`` stays fast.

Every user error is one line on stderr, ``t2i <command>: error: ...``, naming the argument, what was given and
what is allowed, with exit code 2 and no output file left behind.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from tools.cli import bench, compare, data, demo, edit, evaluate, export, generate, release, score, train, world
from tools.cli.args import Parser

# In the order of `t2i --help`.
COMMAND_MODULES = (world, data, score, train, evaluate, generate, edit, export, compare, release, bench, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="t2i",
        description="Autoregressive token-based text-to-image on a synthetic scene world: "
                    "data, prompts, rendering and the judge.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser, metavar="COMMAND")
    for module in COMMAND_MODULES:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"t2i {args.command}"
    from tools.judge.ocr import OCRUnavailable

    def show_warning(message, category, filename, lineno, file=None, line=None):
        print(f"{prog}: warning: {message}", file=sys.stderr)

    try:
        with warnings.catch_warnings():
            warnings.showwarning = show_warning  # one line a warning, as errors are, not a source location
            args.func(args)
    except (ValueError, FileNotFoundError, OCRUnavailable) as e:  # CaptionError, LayoutError, UsageError too
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    return 0
