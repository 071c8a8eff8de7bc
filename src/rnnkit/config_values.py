"""One option's value: a string from the command line parsed by the field's type hint, or a
value from TOML or JSON checked against it; a mismatch is a one-line ``UserError`` naming the
key (``rnnkit.config`` applies it to every option)."""

from __future__ import annotations

import contextlib
import math
import os
import types
import typing
from pathlib import PurePath
from typing import Any, Literal

from rnnkit.errors import UserError

_NONE_WORDS = ("none", "null")
_TRUE_WORDS = ("true", "1", "yes")
_FALSE_WORDS = ("false", "0", "no")


def optional_inner(tp: Any) -> Any | None:
    """X for ``X | None`` (or ``Optional[X]``), else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return rest[0]
        raise TypeError(f"unsupported option type {tp}: only 'X | None' unions are supported")
    return None


def type_name(tp: Any) -> str:
    """A short name for ``--help``: int, float, {lstm,gru}, int | none, list[int], ..."""
    inner = optional_inner(tp)
    if inner is not None:
        return f"{type_name(inner)} | none"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "{" + ",".join(str(o) for o in typing.get_args(tp)) + "}"
    if origin in (list, tuple):
        return f"{origin.__name__}[{', '.join(element_names(tp))}]"
    if isinstance(tp, type) and issubclass(tp, PurePath):
        return "path"
    return getattr(tp, "__name__", str(tp))


def element_names(tp: Any) -> list[str]:
    return ["..." if a is Ellipsis else type_name(a) for a in typing.get_args(tp)]


def expected(tp: Any) -> str:
    """What an option of type ``tp`` accepts, as the middle of an error message."""
    inner = optional_inner(tp)
    if inner is not None:
        if typing.get_origin(inner) is Literal:
            return expected(inner) + ", none"
        return expected(inner) + " or none"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "must be one of " + ", ".join(repr(o) for o in typing.get_args(tp))
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"expects {len(args)} comma-separated values ({', '.join(element_names(tp))})"
        return f"expects a comma-separated list of {type_name(args[0])}"
    article = {int: "an int", float: "a float", bool: "a bool (true/false)", str: "a string"}
    if tp in article:
        return "expects " + article[tp]
    return "expects a " + type_name(tp)


class Mismatch(Exception):
    """A value does not fit a type; the caller turns it into a UserError naming the key."""


def convert(tp: Any, value: object, parse: bool) -> object:
    """``value`` as type ``tp``: strings are parsed when ``parse``, other values are checked."""
    inner = optional_inner(tp)
    if inner is not None:
        if value is None:
            return None
        if parse and isinstance(value, str) and value.strip().lower() in _NONE_WORDS:
            return None
        return convert(inner, value, parse)
    origin = typing.get_origin(tp)
    if origin is Literal:
        for choice in typing.get_args(tp):
            candidate = value
            if parse and isinstance(value, str) and not isinstance(choice, str):
                try:
                    candidate = convert(type(choice), value, parse)
                except Mismatch:
                    continue
            if type(candidate) is type(choice) and candidate == choice:
                return choice
        raise Mismatch
    if origin in (list, tuple):
        args = typing.get_args(tp)
        if not args:
            raise TypeError(f"unsupported option type {tp}: give the element type, e.g. list[int]")
        if parse and isinstance(value, str):
            items: list[object] = [s.strip() for s in value.split(",")] if value.strip() else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise Mismatch
        if origin is tuple and args[-1] is not Ellipsis:  # fixed length, e.g. tuple[int, int]
            if len(items) != len(args):
                raise Mismatch
            return tuple(convert(a, v, parse) for a, v in zip(args, items, strict=True))
        return origin(convert(args[0], v, parse) for v in items)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if parse and isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE_WORDS:
                return True
            if word in _FALSE_WORDS:
                return False
        raise Mismatch
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if parse and isinstance(value, str):
            with contextlib.suppress(ValueError):
                return int(value)
        raise Mismatch
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if parse and isinstance(value, str):
            with contextlib.suppress(ValueError):
                return float(value)
        raise Mismatch
    if tp is str:
        if isinstance(value, str):
            return value
        raise Mismatch
    if isinstance(tp, type) and issubclass(tp, PurePath):
        if isinstance(value, (str, os.PathLike)):
            return tp(value)
        raise Mismatch
    raise TypeError(f"unsupported option type {tp}")


def coerce(key: str, tp: Any, value: object, parse: bool) -> object:
    """``convert``, with a mismatch reported as a one-line UserError naming ``key``."""
    try:
        result = convert(tp, value, parse)
    except Mismatch:
        raise UserError(f"option {key!r} {expected(tp)}, got {value!r}") from None
    items = result if isinstance(result, (tuple, list)) else (result,)
    if any(isinstance(v, float) and not math.isfinite(v) for v in items):
        raise UserError(f"option {key!r} must be a finite number, got {value!r}")
    return result
