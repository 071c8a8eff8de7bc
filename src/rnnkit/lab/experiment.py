"""What every lab experiment (gradient flow, exploding gradients, logistic map, activations,
teacher forcing) has: an option parser whose mistakes are one-line UserErrors, option checks,
an output directory, a results file and a progress bar. Figures are drawn by ``rnnkit.plots``
(``figure``, ``save_figure``) at the lab's ``DPI``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from dataclasses import dataclass
from pathlib import Path

from rnnkit.argparse_config import parser_from_dataclasses
from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.files import atomic_write

DPI = 100  # the lab's figures: rnnkit.plots.figure(..., dpi=DPI)


@dataclass
class LabOptions:
    """The options every lab experiment has."""

    out: str | None = option(None, "output directory (created; default: runs/lab-EXPERIMENT)")
    quiet: bool = option(False, "no progress bar")


@dataclass
class SeedOption:
    """--seed, for an experiment whose options do not declare it."""

    seed: int = option(0, "random seed (data and initial weights)")


def lab_parser(name: str, description: str, *options: type) -> argparse.ArgumentParser:
    """``rnnkit lab NAME``'s parser: the fields of the ``options`` dataclasses, then --out,
    --quiet and (unless declared) --seed; an experiment may add arguments of its own."""
    declared = {f.name for cls in options for f in dataclasses.fields(cls)}
    common = (LabOptions,) if "seed" in declared else (LabOptions, SeedOption)
    prog = f"rnnkit lab {name}"
    p = parser_from_dataclasses(prog, *options, *common, description=description)
    p.set_defaults(out=f"runs/lab-{name}")
    return p


def parse(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace | None:
    """Parsed options, or None when --help was printed."""
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # only --help exits; errors raise UserError
        if exit_.code not in (0, None):
            raise
        return None
    if isinstance(getattr(args, "seed", None), int):  # torch, numpy: no negative seeds
        check_int("--seed", args.seed, 0, 2**63 - 1)
    return args


def check_int(name: str, value: int, low: int, high: float = math.inf) -> int:
    if not low <= value <= high:
        bound = f">= {low}" if high == math.inf else f"in [{low}, {int(high)}]"
        raise UserError(f"option {name}: expected an integer {bound}, got {value}")
    return value


def check_float(name: str, value: float, low: float, high: float = math.inf) -> float:
    if not (math.isfinite(value) and low <= value <= high):
        bound = f">= {low:g}" if high == math.inf else f"in [{low:g}, {high:g}]"
        raise UserError(f"option {name}: expected a number {bound}, got {value}")
    return value


def check_choices(name: str, values: tuple[str, ...], choices: tuple[str, ...]) -> tuple[str, ...]:
    """Distinct names from ``choices``, at least one."""
    bad = [v for v in values if v not in choices]
    if bad or not values or len(set(values)) != len(values):
        raise UserError(
            f"option {name}: expected distinct comma-separated names from {', '.join(choices)}, "
            f"got {','.join(values)!r}"
        )
    return values


def out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"option --out: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_json(path: Path, data: dict) -> Path:
    """Written to a temporary name and renamed, so a reader never sees half a file."""
    atomic_write(path, json.dumps(data, indent=1, allow_nan=False) + "\n")
    return path


def progress(iterable, *, desc: str, total: int | None = None, quiet: bool = False):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=quiet, unit="step", leave=False)


def finite_or_none(value: float) -> float | None:
    """JSON has no inf/nan: a diverged figure is written as null."""
    return value if math.isfinite(value) else None
