"""Command-line argument types and checks shared by :mod:`towerjax.cli` and the studies' parsers.

Each type raises ``argparse.ArgumentTypeError`` (argparse then names the flag); a value
that only the library can judge is raised as :class:`towerjax.checks.InputError` naming
the field, and :func:`flag` turns that field into the flag the user typed; inside a message,
the library names a setting as Python does (``numeric_strings='parse'``, ``overwrite=True``)
and :func:`flag_text` rewrites it as the flag (``--numeric-strings parse``, ``--overwrite``):
the one place the two are mapped. :class:`Parser` reports errors in one line (exit 2) and shows
every default one way, ``[default X]`` (:class:`HelpFormatter`). Every file or folder a command
writes is checked by :func:`check_output_flag` (:func:`towerjax.outputs.check_output`) before
any work.
"""

from __future__ import annotations

import argparse
import ast
import re
import shlex
from pathlib import Path

from towerjax.outputs import output_problem, unwritable

__all__ = [
    "HelpFormatter",
    "Parser",
    "add_seed_arguments",
    "check_out_dir",
    "check_output_flag",
    "column_ints",
    "default_text",
    "flag",
    "flag_text",
    "fraction",
    "input_error_text",
    "integer",
    "merge_column_ints",
    "name_list",
    "nonnegative_float",
    "optional_pair",
    "positive_float",
    "positive_int",
    "positive_int_list",
    "probability",
    "subcommand",
]


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None


def _number(text: str, ok, expected: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    if not ok(value):
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text}")
    return value


def positive_float(text: str) -> float:
    return _number(text, lambda v: 0 < v < float("inf"), "a positive number")


def nonnegative_float(text: str) -> float:
    return _number(text, lambda v: 0 <= v < float("inf"), "a number >= 0")


def probability(text: str) -> float:
    return _number(text, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def fraction(text: str) -> float:
    return _number(text, lambda v: 0 <= v < 1, "a number in [0, 1)")


def positive_int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}"
        ) from None
    if any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected comma-separated positive integers, got {text!r}")
    return values


def name_list(text: str) -> list[str]:
    names = [part.strip() for part in text.split(",")]
    if not all(names):
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def column_ints(text: str) -> dict[str, int]:
    """``"COL=N[,COL=N]"`` as ``{COL: N}`` with positive integers ``N``."""
    out: dict[str, int] = {}
    for part in text.split(","):
        column, sep, number = part.rpartition("=")
        column = column.strip()
        try:
            value = int(number)
        except ValueError:
            value = 0
        if not sep or not column or value < 1:
            raise argparse.ArgumentTypeError(
                f"expected COL=N (a column name and a positive integer), comma-separated, got {text!r}"
            )
        if column in out:
            raise argparse.ArgumentTypeError(f"names column {column!r} twice in {text!r}")
        out[column] = value
    return out


def merge_column_ints(field: str, parts: list[dict[str, int]]) -> dict[str, int]:
    """The ``{COL: N}`` of a repeated :func:`column_ints` flag; InputError naming ``field``
    for a column given twice."""
    from towerjax.checks import InputError

    merged: dict[str, int] = {}
    for part in parts:
        for column, value in part.items():
            if column in merged:
                raise InputError(field, f"names column {column!r} twice")
            merged[column] = value
    return merged


def optional_pair(text: str) -> tuple[float, float] | str:
    """``"LO,HI"`` as a pair of numbers, or ``"none"`` (returned as the string ``"none"``)."""
    if text.strip().lower() == "none":
        return "none"
    parts = text.split(",")
    try:
        low, high = (float(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'LO,HI' or 'none', got {text!r}") from None
    return (low, high)


def add_seed_arguments(parser: argparse.ArgumentParser, *, seeds: int) -> None:
    """``--seeds``, ``--seed`` and ``--devices``."""
    parser.add_argument("--seeds", type=positive_int, default=seeds, help="independent runs, vmapped")
    parser.add_argument("--seed", type=integer, default=0, help="root random seed")
    parser.add_argument(
        "--devices",
        type=positive_int,
        default=None,
        help="local devices to shard the seeds over [default all; on CPU one per core]",
    )


def flag(parser: argparse.ArgumentParser, field: str) -> str:
    """The flag of ``parser`` that sets ``field`` (``batch_size`` -> ``--batch-size``).

    A parser may map fields to other flags with ``set_defaults(flags={field: "--flag"})``.
    """
    mapped = (parser.get_default("flags") or {}).get(field)
    if mapped:
        return mapped
    for action in parser._actions:
        if action.dest == field and action.option_strings:
            return "/".join(action.option_strings[:1])
    return "--" + field.replace("_", "-")


_SETTING = re.compile(r"""\b([a-z][a-z0-9_]*)=(True|False|None|'[^']*'|"[^"]*"|-?\d+(?:\.\d+)?|\[[^\]]*\])""")


def _flag_value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    text = str(value)
    return text if text and re.fullmatch(r"[\w.,:/+-]+", text) else shlex.quote(text)


def _setting_as_flag(parser: argparse.ArgumentParser, match: re.Match) -> str:
    """One ``name=value`` of a message as ``parser``'s flag, or the text as it was when
    ``name`` sets no flag of ``parser``."""
    name, literal = match.group(1), match.group(2)
    action = next((a for a in parser._actions if a.dest == name and a.option_strings), None)
    if action is None:
        return match.group(0)
    value = ast.literal_eval(literal)
    option = flag(parser, name)
    if isinstance(action, argparse.BooleanOptionalAction):
        on, off = action.option_strings[0], action.option_strings[-1]
        return on if value else off
    if action.nargs == 0 and isinstance(action.const, bool):  # store_true / store_false
        return option if bool(value) == action.const else f"without {option}"
    return f"{option} {_flag_value(value)}"


def flag_text(parser: argparse.ArgumentParser, message: str) -> str:
    """``message`` with each setting named as in Python (``name=value``: ``numeric_strings='parse'``,
    ``overwrite=True``, ``categorical=['user_id']``) rewritten as ``parser``'s flag
    (``--numeric-strings parse``, ``--overwrite``, ``--categorical user_id``); a name that
    is no flag of ``parser`` stays as it is."""
    return _SETTING.sub(lambda match: _setting_as_flag(parser, match), message)


def input_error_text(parser: argparse.ArgumentParser, argument: str, message: str) -> str:
    """An :class:`~towerjax.checks.InputError` as the command line reports it:
    ``argument --flag: message`` (:func:`flag`, :func:`flag_text`)."""
    return f"argument {flag(parser, argument)}: {flag_text(parser, message)}"


def check_output_flag(parser: argparse.ArgumentParser, name: str, path: Path, *, folder: bool) -> None:
    """Exits 2 with one line naming the flag ``name`` unless towerjax can write the file (or
    folder) ``path`` (:func:`towerjax.outputs.output_problem`); creates nothing."""
    problem = output_problem(path, folder=folder)
    if problem:
        parser.error(f"argument {name}: {problem}")


def check_out_dir(parser: argparse.ArgumentParser, name: str, path: Path) -> None:
    """Exits 2 naming ``name`` unless ``path`` is a folder we can create and write to; creates
    it (for the studies' folders, filled as a run goes; a finished result uses
    :func:`check_output_flag`)."""
    problem = unwritable(path)
    if problem:
        parser.error(f"argument {name}: {problem}")


def default_text(value) -> str:
    """A default as help text shows it: ``none``, ``true``/``false``, ``64,64`` for a sequence."""
    if isinstance(value, (tuple, list)):
        return ",".join(f"{v:g}" if isinstance(v, float) else default_text(v) for v in value) or "none"
    if value is None:
        return "none"
    return str(value).lower() if isinstance(value, bool) else str(value)


class HelpFormatter(argparse.HelpFormatter):
    """Appends `` [default X]`` to a flag's help, unless the help already states its default
    (``[default ...]``) or there is none to show (``None``, ``False``: unset, or a switch)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        unset = default is None or default is False or default == argparse.SUPPRESS
        if not action.option_strings or "[default" in text or unset:
            return text
        return f"{text} [default {default_text(default).replace('%', '%%')}]"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line and exit 2, and whose help shows defaults
    (:class:`HelpFormatter`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def subcommand(subparsers, name: str, handler, **kwargs) -> argparse.ArgumentParser:
    """Adds subcommand ``name`` whose ``handler(args) -> int`` runs it.

    The handler may raise :class:`towerjax.checks.InputError`; the command line reports it
    as ``argument --flag: message`` on this subcommand (exit 2). ``set_defaults(flags={...})``
    on the returned parser maps a field to a differently named flag.
    """
    parser = subparsers.add_parser(name, **kwargs)
    parser.set_defaults(handler=handler, subparser=parser)
    return parser
