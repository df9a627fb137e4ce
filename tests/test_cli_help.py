"""Every command's --help is written for its user: a one-line purpose, an example of the command as
typed, no developer docstrings, class names or source paths, and each default stated once."""

import argparse
import ast
import re
import shlex
from pathlib import Path

import pytest

from dsnot_ref.cli import build_parser

PACKAGE = Path(__file__).resolve().parent.parent / "dsnot_ref"


def all_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every subcommand's, recursively (golden run and golden check included)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                found += all_parsers(sub)
    return found


def class_names() -> set[str]:
    """Names of the package's classes with an inner capital (PruneJob, UserError, ...): words a user
    would only meet by reading the source."""
    names = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and re.search(r"[a-z][A-Z]", node.name):
                names.add(node.name)
    return names


PARSERS = all_parsers(build_parser())
CLASSES = class_names()


def test_every_subcommand_is_covered():
    progs = {p.prog for p in PARSERS}
    assert {"dsnot-ref", "dsnot-ref prune", "dsnot-ref demo", "dsnot-ref eval", "dsnot-ref fetch-model",
            "dsnot-ref compare-masks", "dsnot-ref report", "dsnot-ref golden", "dsnot-ref golden run",
            "dsnot-ref golden check"} <= progs
    assert len(CLASSES) > 5  # the scan found the package's classes


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_help_opens_with_a_one_line_purpose_then_an_example(parser):
    lines = parser.description.split("\n")
    assert lines[0].endswith(".") and len(lines[0]) <= 100, lines[0]
    assert lines[1] == "" and lines[2] == "example:"
    assert lines[3].startswith(f"  {parser.prog}"), f"the first example is not a {parser.prog} command: {lines[3]}"
    help_text = parser.format_help()
    assert help_text.index(lines[0]) < help_text.index("options:")


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_help_has_no_developer_words(parser):
    help_text = parser.format_help()
    assert "``" not in help_text and ":func:" not in help_text  # reStructuredText of a docstring
    assert not re.search(r"[\w/]+\.(py|md)\b", help_text), re.search(r"[\w/]+\.(py|md)\b", help_text)
    assert "dsnot_ref/" not in help_text and "cli/" not in help_text
    named = sorted(name for name in CLASSES if re.search(rf"\b{name}\b", help_text))
    assert not named, f"class names in {parser.prog} --help: {named}"


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_each_default_is_said_once(parser):
    for action in parser._actions:
        said = len(re.findall(r"\bdefault\b", action.help or ""))
        assert said <= 1, f"{parser.prog} {action.option_strings}: {action.help}"
        if action.help and "%(default)" in action.help:
            pytest.fail(f"{parser.prog} {action.option_strings}: a default printed by argparse and written too")
    assert "(default: " not in parser.format_help()  # one spelling: "(default X)"


def test_a_developer_docstring_would_fail():
    """The check can fail: prune's help as it once was, the module docstring of its argument parser."""
    bad = argparse.ArgumentParser(prog="dsnot-ref prune", description=(
        "Arguments of `dsnot-ref prune`: the flags, and their validation into a frozen ``PruneJob``.\n\n"
        "``cli/prune.py`` does the work."))
    with pytest.raises(AssertionError):
        test_help_opens_with_a_one_line_purpose_then_an_example(bad)
    with pytest.raises(AssertionError):
        test_help_has_no_developer_words(bad)


def commands_in(text: str) -> list[list[str]]:
    """Every `dsnot-ref ...` command in the text, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", text)
    found = []
    for line in joined.splitlines():
        line = line.strip()
        if line.startswith("dsnot-ref "):
            found.append(shlex.split(line.split("  #")[0])[1:])
    return found


def parses(argv: list[str]) -> bool:
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        return False
    return True


@pytest.mark.parametrize("parser", PARSERS, ids=[p.prog for p in PARSERS])
def test_the_help_examples_parse(parser):
    examples = commands_in(parser.description)
    assert examples
    for argv in examples:
        assert parses(argv), f"{parser.prog} --help example does not parse: {argv}"


def test_the_readme_commands_parse():
    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    blocks = "\n".join(re.findall(r"```bash\n(.*?)```", readme, flags=re.DOTALL))
    commands = commands_in(blocks)
    assert len(commands) >= 5
    for argv in commands:
        assert parses(argv), f"README command does not parse: {argv}"
    assert not parses(["prune", "--model", "m", "--no-such-flag"])  # the check can fail


def test_every_prune_flag_is_in_the_command_reference():
    reference = (PACKAGE.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    prune = next(p for p in PARSERS if p.prog == "dsnot-ref prune")
    flags = [a.option_strings[0] for a in prune._actions if a.option_strings and a.option_strings[0] != "-h"]
    assert len(flags) > 30
    assert [f for f in flags if f"`{f}`" not in reference and f"`{f} " not in reference] == []


def test_the_readme_methods_table_names_every_method_and_variant():
    from dsnot_ref.methods import METHODS
    from dsnot_ref.methods.dsnot.common import VARIANTS

    readme = (PACKAGE.parent / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## Methods"):readme.index("## Where everything else lives")]
    missing = [m for m in METHODS if m != "dense" and f"`--prune-method {m}`" not in table]
    missing += [v for v in VARIANTS if v != "reference" and f"`--dsnot-variant {v}`" not in table]
    assert missing == [], f"methods the README's table does not name: {missing}"
