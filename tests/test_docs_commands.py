"""The ``t2i`` command lines that the docs give a user (the README's bash blocks, docs/release_tiny.sh) name
commands and flags that exist: a renamed flag fails here, not in a newcomer's shell or hours into a release."""

from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from tools.cli import build_parser

ROOT = Path(__file__).parents[1]


def shell_commands(text: str) -> list[list[str]]:
    """Each simple command of a shell text, as words: continuations joined, split at ; && || | and newlines."""
    text = text.replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        try:
            words = shlex.split(line, comments=True)
        except ValueError:  # an unfinished quote: a heredoc or a python -c body, not a t2i line
            continue
        current: list[str] = []
        for word in words + [";"]:
            if word in {";", "&&", "||", "|", "&"}:
                if current:
                    commands.append(current)
                current = []
            else:
                current.append(word)
    return commands


def t2i_invocations(text: str) -> list[list[str]]:
    """The words after ``t2i`` of every command that runs it (directly, or after env assignments and nice)."""
    found = []
    for words in shell_commands(text):
        if "t2i" in words:
            found.append(words[words.index("t2i") + 1:])
    return found


def readme_bash() -> str:
    readme = (ROOT / "README.md").read_text()
    return "\n".join(re.findall(r"```bash\n(.*?)```", readme, flags=re.S))


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def unknown_parts(words: list[str]) -> list[str]:
    """What of one t2i invocation the parser does not know: a command, or a flag of that command."""
    parser, i = build_parser(), 0
    while i < len(words) and subparsers(parser):
        choices = subparsers(parser)
        if words[i] not in choices:
            return [f"command {words[i]!r} (known: {sorted(choices)})"]
        parser, i = choices[words[i]], i + 1
    known = parser._option_string_actions
    flags = [w.split("=", 1)[0] for w in words[i:] if w.startswith("--")]
    return [f"flag {flag}" for flag in flags if flag not in known]


SOURCES = {"README.md": readme_bash, "docs/release_tiny.sh": lambda: (ROOT / "docs/release_tiny.sh").read_text()}


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_documented_t2i_commands_exist(source):
    invocations = t2i_invocations(SOURCES[source]())
    assert len(invocations) >= 5, f"{source}: found only {len(invocations)} t2i lines; is the parsing right?"
    problems = {" ".join(words)[:100]: unknown_parts(words) for words in invocations}
    assert not {k: v for k, v in problems.items() if v}, problems


def test_a_wrong_flag_or_command_is_caught():
    assert unknown_parts(["train", "ar", "--preset", "tiny", "--resume"]) == []
    assert unknown_parts(["train", "ar", "--max-minute", "5"]) == ["flag --max-minute"]
    assert unknown_parts(["trian", "ar"])[0].startswith("command 'trian'")
    assert t2i_invocations("OMP_NUM_THREADS=1 nice t2i score --out a.json && cat a.json\n"
                           "t2i generate \\\n  --seed 1 | tee x") == [["score", "--out", "a.json"],
                                                                     ["generate", "--seed", "1"]]
