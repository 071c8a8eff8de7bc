"""Run configuration: dataclasses of sections, set from defaults, a TOML file and the command line.

A run config is a dataclass whose fields are section dataclasses, for example
``RunConfig(model: ModelConfig, data: DataConfig, train: TrainConfig)``. Each task defines its
own; this module is generic and reads only dataclass fields and their type hints (DESIGN.md,
"Configuration and the command line"; STYLE.md §5).

Options are named by dotted keys, ``section.key``, and resolved in one order:

    defaults  <  TOML file (``[train] lr = 3e-3``)  <  command line (``--train.lr 3e-3``)

A string value is parsed by the field's type rather than with ``ast.literal_eval`` (STYLE.md's
anchor): ``--model.cell gru`` then needs no quotes, and an error can say what was expected.
Supported types: ``int``, ``float`` (ints accepted), ``bool`` (true/false/1/0/yes/no), ``str``,
``Path``, ``Literal[...]``, ``X | None`` ("none"/"null" give None) and ``tuple``/``list`` of those
(comma-separated on the command line). Unknown keys and wrong types are ``UserError``s that name
the key, with a suggestion when one is close (``difflib``).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import json
import os
import tomllib
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePath
from typing import Any

from rnnkit.config_values import coerce as _coerce
from rnnkit.config_values import type_name as _type_name
from rnnkit.errors import UserError
from rnnkit.files import atomic_write

__all__ = [
    "option",
    "config_to_dict",
    "config_from_dict",
    "apply_overrides",
    "load_toml",
    "parse_cli_overrides",
    "resolve_config",
    "describe",
    "save_config",
    "atomic_write",
]

Overrides = Mapping[str, object] | Iterable[tuple[str, object]]


def option(default: Any, help: str) -> Any:
    """A dataclass field with a default and the help text that ``--help`` lists.

    Mutable defaults (lists, dicts, dataclass instances: anything unhashable) become a
    ``default_factory`` that deep-copies them, so instances never share one list.

    Args:
        default: the default value.
        help: one line for ``--help``; stored as ``field.metadata["help"]``.

    Returns:
        A ``dataclasses.field``, e.g. ``lr: float = option(3e-3, "learning rate")``.
    """
    metadata = {"help": help}
    if type(default).__hash__ is None:  # the test dataclasses itself uses for "mutable"
        return dataclasses.field(
            default_factory=functools.partial(copy.deepcopy, default), metadata=metadata
        )
    return dataclasses.field(default=default, metadata=metadata)


# ---------------------------------------------------------------------------------------------
# Fields and types


@functools.cache
def _fields(cls: type) -> dict[str, tuple[dataclasses.Field, Any]]:
    """The settable fields of dataclass ``cls``: name -> (field, resolved type)."""
    try:
        hints = typing.get_type_hints(cls)
    except NameError as e:  # a class defined inside a function, with string annotations
        raise TypeError(f"cannot resolve the type hints of {cls.__qualname__}: {e}") from None
    return {f.name: (f, hints[f.name]) for f in dataclasses.fields(cls) if f.init}


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _option_keys(cls: type, prefix: str = "") -> list[str]:
    """Every dotted option key of config class ``cls``."""
    keys = []
    for name, (_, tp) in _fields(cls).items():
        if _is_section(tp):
            keys += _option_keys(tp, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _lookup(cls: type, key: str) -> Any:
    """The type of option ``key`` in config class ``cls``; a UserError if there is none."""
    parts = key.split(".")
    tp: Any = cls
    for depth, name in enumerate(parts):
        prefix = "".join(p + "." for p in parts[:depth])
        fields = _fields(tp)
        if name not in fields:
            more = depth < len(parts) - 1  # more parts follow, so `name` was meant as a section
            if more:
                message = f"unknown section {prefix + name!r}"
                names = [n for n, (_, t) in fields.items() if _is_section(t)]
            else:
                message = f"unknown option {key!r}"
                names = list(fields)
            close = difflib.get_close_matches(name, names, n=1)
            if close:
                guess = prefix + close[0]
            else:  # the same name in another section: 'model.lr' for 'train.lr'
                leaf = parts[-1]
                same = [k for k in _option_keys(cls) if k.rsplit(".", 1)[-1] == leaf]
                guess = same[0] if same and not more else None
            if guess:
                message += f" (did you mean {guess!r}?)"
            raise UserError(message)
        tp = fields[name][1]
        if depth < len(parts) - 1 and not _is_section(tp):
            raise UserError(
                f"unknown option {key!r}: {prefix + name!r} is an option, not a section"
            )
    if _is_section(tp):
        raise UserError(f"{key!r} is a section, not an option: set '{key}.<name>'")
    return tp


def _flatten(d: Mapping[str, object], prefix: str = "") -> dict[str, object]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    flat: dict[str, object] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            flat.update(_flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


# ---------------------------------------------------------------------------------------------
# Dicts, overrides, TOML, the command line


def config_to_dict(cfg: Any) -> dict[str, object]:
    """A config as nested JSON-safe dicts (tuples become lists, paths strings).

    Args:
        cfg: a config dataclass instance.

    Returns:
        ``{"model": {"cell": "lstm", ...}, "train": {...}}``; ``config_from_dict`` inverts it.
    """
    out: dict[str, object] = {}
    for name in _fields(type(cfg)):
        out[name] = _to_json(getattr(cfg, name))
    return out


def _to_json(v: object) -> object:
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return config_to_dict(v)
    if isinstance(v, (list, tuple)):
        return [_to_json(x) for x in v]
    if isinstance(v, PurePath):
        return str(v)
    return v


def config_from_dict(cls: type, d: Mapping[str, object]) -> Any:
    """Rebuild a config from ``config_to_dict``'s output, strictly.

    Unknown sections or keys and values of the wrong type are errors; strings are not parsed
    (``"3"`` is not an int here). Keys that are absent take the dataclass defaults, so a config
    saved before an option was added still loads; a field without a default must be present.

    Args:
        cls: the config class, e.g. a task's ``RunConfig``.
        d: nested dicts, ``{"train": {"lr": 0.003}}`` (dotted keys work too).

    Returns:
        An instance of ``cls``.
    """
    if not isinstance(d, Mapping):
        raise UserError(f"a {cls.__name__} is built from a mapping, got {type(d).__name__}")
    flat = _flatten(d)
    values = {key: _coerce(key, _lookup(cls, key), v, parse=False) for key, v in flat.items()}
    return _build(cls, values, "")


def _build(cls: type, values: dict[str, object], prefix: str) -> Any:
    kwargs = {}
    for name, (f, tp) in _fields(cls).items():
        key = prefix + name
        if _is_section(tp) and any(k.startswith(key + ".") for k in values):
            kwargs[name] = _build(tp, values, key + ".")
        elif key in values:
            kwargs[name] = values[key]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise UserError(f"missing {'section' if _is_section(tp) else 'option'} {key!r}")
    return cls(**kwargs)


def apply_overrides(cfg: Any, overrides: Overrides) -> Any:
    """A new config with ``overrides`` applied; ``cfg`` itself is never changed.

    Args:
        cfg: a config dataclass instance.
        overrides: dotted keys to values, as a dict (e.g. from ``load_toml``; nested dicts are
            flattened) or a list of pairs (from ``parse_cli_overrides``; later pairs win). String
            values are parsed by the field's type; other values are checked against it (an int is
            accepted for a float, a bool is not accepted for an int).

    Returns:
        A deep copy of ``cfg`` with the options replaced (``dataclasses.replace``, so
        ``__post_init__`` checks run again).
    """
    items = _flatten(overrides).items() if isinstance(overrides, Mapping) else overrides
    new = copy.deepcopy(cfg)
    for key, value in items:
        tp = _lookup(type(cfg), key)
        new = _replace(new, key.split("."), _coerce(key, tp, value, parse=True))
    return new


def _replace(obj: Any, parts: list[str], value: object) -> Any:
    name = parts[0]
    if len(parts) > 1:
        value = _replace(getattr(obj, name), parts[1:], value)
    return dataclasses.replace(obj, **{name: value})


def load_toml(path: str | os.PathLike) -> dict[str, object]:
    """Read a TOML config file as dotted keys: ``[train] lr = 3e-3`` -> ``{"train.lr": 0.003}``.

    Args:
        path: the TOML file.

    Returns:
        The flattened options; nested tables give longer keys (``[model.encoder]``).

    Raises:
        UserError: the file is missing or unreadable, or not valid TOML (the message names the
            file and tomllib's line and column).
    """
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():  # a FIFO: open would block
        raise UserError(f"config file {path} is not a regular file, expected a TOML file")
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UserError(f"config file {path} not found") from None
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"config file {path} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise UserError(f"config file {path} is not UTF-8 text") from None
    except OSError as e:
        raise UserError(f"cannot read config file {path}: {e.strerror or e}") from None
    return _flatten(data)


def parse_cli_overrides(argv: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
    """Split config overrides (``--section.key value``, ``--section.key=value``) off ``argv``.

    An option whose name holds a dot is an override; dashes in its name become underscores
    (``--train.max-steps`` sets ``train.max_steps``). Everything else, and everything after a
    bare ``--``, is returned in order for the command's own parser.

    Args:
        argv: the command-line arguments.

    Returns:
        ``(overrides, remaining)``: the (key, string value) pairs in order, and the other args.

    Raises:
        UserError: an override without a value.
    """
    overrides: list[tuple[str, str]] = []
    remaining: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            remaining += argv[i:]
            break
        name, eq, value = arg[2:].partition("=")
        if arg.startswith("--") and "." in name:
            if not eq:
                if i + 1 == len(argv) or argv[i + 1].startswith("--"):
                    raise UserError(f"option '--{name}' needs a value")
                i += 1
                value = argv[i]
            overrides.append((name.replace("-", "_"), value))
        else:
            remaining.append(arg)
        i += 1
    return overrides, remaining


def resolve_config(
    default: Any, toml_path: str | os.PathLike | None = None, cli_overrides: Overrides = ()
) -> Any:
    """The run's config: defaults < TOML file < command line.

    Args:
        default: the task's default config (an instance, or a class whose fields all default).
        toml_path: a TOML file of overrides, or None.
        cli_overrides: pairs from ``parse_cli_overrides`` (or a dict).

    Returns:
        A new config; errors in the TOML file's values name the file.
    """
    cfg = default() if isinstance(default, type) else default
    if toml_path is not None:
        toml = load_toml(toml_path)
        try:
            cfg = apply_overrides(cfg, toml)
        except UserError as e:
            raise UserError(f"config file {toml_path}: {e}") from None
    return apply_overrides(cfg, cli_overrides)


def describe(cls_or_cfg: Any) -> list[tuple[str, str, str, str]]:
    """Every option, for ``--help``: (dotted key, type name, default repr, help text).

    Args:
        cls_or_cfg: a config class (its defaults are listed) or instance (its values are).

    Returns:
        One row per option in field order, e.g. ``("train.lr", "float", "0.003", "step size")``;
        a field without a default shows ``"(required)"``.
    """
    cfg = cls_or_cfg
    if isinstance(cls_or_cfg, type):
        try:
            cfg = cls_or_cfg()
        except TypeError:  # required fields: list the field-level defaults instead
            cfg = None
    cls = cls_or_cfg if isinstance(cls_or_cfg, type) else type(cls_or_cfg)
    rows: list[tuple[str, str, str, str]] = []
    _describe(cls, cfg, "", rows)
    return rows


def _describe(cls: type, cfg: Any, prefix: str, rows: list) -> None:
    for name, (f, tp) in _fields(cls).items():
        if cfg is not None:
            value = getattr(cfg, name)
        elif f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = dataclasses.MISSING
        if _is_section(tp):
            _describe(tp, None if value is dataclasses.MISSING else value, f"{prefix}{name}.", rows)
        else:
            shown = "(required)" if value is dataclasses.MISSING else repr(value)
            rows.append((prefix + name, _type_name(tp), shown, f.metadata.get("help", "")))


def save_config(cfg: Any, path: str | os.PathLike, argv: list[str] | None = None) -> None:
    """Write ``{"config": ..., "argv": ...}`` as JSON, atomically (e.g. ``out_dir/config.json``).

    Args:
        cfg: the resolved config.
        path: the JSON file to write.
        argv: the command line that produced it, or None.
    """
    payload = {"config": config_to_dict(cfg), "argv": None if argv is None else list(argv)}
    text = json.dumps(payload, indent=2) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
