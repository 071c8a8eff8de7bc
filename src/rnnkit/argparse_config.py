"""Command-line parsers built from dataclasses, for the commands that are not runs
(``rnnkit lab ...``, ``rnnkit bench ...``): the options are declared once, as fields.

A field becomes an option named after it (``hidden_size`` -> ``--hidden-size``; ``T`` ->
``--T``), its default and help text those of ``rnnkit.config.option(default, help)``, its value
parsed by the field's type as ``--section.key`` values are (``rnnkit.config_values``: ``int``,
``float``, ``bool``, ``str``, ``Literal``, ``X | None``, comma-separated ``list``/``tuple``). A
``bool`` field that defaults to False is a flag (``--quiet``); a field without a default is a
positional argument. A mistake is one line, a ``UserError``, not argparse's usage and exit.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from rnnkit.config_values import Mismatch, convert, expected
from rnnkit.errors import UserError

T = TypeVar("T")


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are a one-line ``UserError`` naming the command."""

    def error(self, message: str):  # argparse would print usage and exit with status 2
        raise UserError(f"{self.prog}: {message}")


def _parse_as(tp: Any) -> Callable[[str], object]:
    """An argparse ``type``: the text as ``tp``, or an error saying what was expected."""

    def parse(text: str) -> object:
        try:
            value = convert(tp, text, parse=True)
        except Mismatch:
            raise argparse.ArgumentTypeError(f"{expected(tp)}, got {text!r}") from None
        items = value if isinstance(value, tuple | list) else (value,)
        if any(isinstance(v, float) and not math.isfinite(v) for v in items):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        return value

    return parse


def parser_from_dataclasses(
    prog: str,
    *classes: type,
    description: str | None = None,
    epilog: str | None = None,
    parser_class: type[argparse.ArgumentParser] = OneLineParser,
    raw_text: bool = False,
) -> argparse.ArgumentParser:
    """A parser with one argument per field of each dataclass, in field order.

    Args:
        prog: the command, e.g. "rnnkit lab compare".
        *classes: dataclasses whose fields are the options; no name may repeat.
        description: shown by --help above the options.
        epilog: shown by --help below them.
        parser_class: the parser's class (default ``OneLineParser``).
        raw_text: keep the description's and epilog's line breaks.

    Returns:
        The parser; ``parse_args`` gives a namespace with the fields' names (see ``from_args``).
    """
    formatter = argparse.RawDescriptionHelpFormatter if raw_text else argparse.HelpFormatter
    p = parser_class(prog=prog, description=description, epilog=epilog, formatter_class=formatter)
    seen: set[str] = set()
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if not f.init:
                continue
            if f.name in seen:
                raise TypeError(f"option {f.name!r} is declared by two of the dataclasses")
            seen.add(f.name)
            tp, text = hints[f.name], f.metadata.get("help")
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                p.add_argument(f.name, type=_parse_as(tp), help=text)
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            flag = "--" + f.name.replace("_", "-")
            if tp is bool and default is False:
                p.add_argument(flag, dest=f.name, action="store_true", help=text)
                continue
            shown = ",".join(map(str, default)) if isinstance(default, tuple | list) else default
            if default is not None and text and "default" not in text:
                text = f"{text} (default: {shown})"
            metavar = f.name.upper() if f.name.islower() else f.name
            p.add_argument(
                flag, dest=f.name, type=_parse_as(tp), default=default, metavar=metavar, help=text
            )
    return p


def from_args(cls: type[T], args: argparse.Namespace, **changes: Any) -> T:
    """An instance of dataclass ``cls`` from the parsed options with its fields' names.

    Args:
        cls: the dataclass.
        args: what ``parse_args`` returned (other attributes are ignored).
        **changes: values that replace parsed ones (e.g. checked or converted).

    Returns:
        The instance.
    """
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if f.init}
    return cls(**{**values, **changes})
