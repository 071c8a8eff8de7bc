"""What the lab's gradient-flow, exploding-gradient, logistic-map, activation and teacher-forcing
experiments share: an option parser whose mistakes are one-line UserErrors, option checks, a
results file, a progress bar and a multi-panel figure on an Agg canvas (outside pyplot, like
rnnkit.plots)."""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path

from rnnkit.errors import UserError

DPI = 100


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse would print usage and exit; we want one line
        raise UserError(f"{self.prog}: {message}")


def lab_parser(name: str, description: str) -> argparse.ArgumentParser:
    """``rnnkit lab NAME``'s parser with the options every experiment has: --out, --seed,
    --quiet."""
    p = _Parser(prog=f"rnnkit lab {name}", description=description)
    p.add_argument("--out", default=f"runs/lab-{name}", help="output directory (created)")
    p.add_argument("--seed", type=int, default=0, help="random seed (data and initial weights)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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


def float_list(name: str):
    """An argparse type: comma-separated numbers."""

    def parse_list(text: str) -> list[float]:
        try:
            values = [float(v) for v in text.split(",") if v.strip()]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{name}: expected comma-separated numbers, got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"{name}: expected at least one number")
        return values

    return parse_list


def choice_list(name: str, choices: Iterable[str]):
    """An argparse type: comma-separated names from ``choices``, without repeats."""
    choices = tuple(choices)

    def parse_list(text: str) -> list[str]:
        values = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in values if v not in choices]
        if bad or not values or len(set(values)) != len(values):
            raise argparse.ArgumentTypeError(
                f"{name}: expected distinct comma-separated names from {', '.join(choices)}, "
                f"got {text!r}"
            )
        return values

    return parse_list


def out_dir(path: str) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"option --out: {out} exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_json(path: Path, data: dict) -> Path:
    """Written to a temporary name and renamed, so a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def progress(iterable, *, desc: str, total: int | None = None, quiet: bool = False):
    from tqdm import tqdm

    return tqdm(iterable, desc=desc, total=total, disable=quiet, unit="step", leave=False)


def figure(nrows: int, ncols: int, figsize: tuple[float, float]):
    """(figure, axes array nrows x ncols) on an Agg canvas, outside pyplot."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    fig.clear()
    return path


def finite_or_none(value: float) -> float | None:
    """JSON has no inf/nan: a diverged figure is written as null."""
    return value if math.isfinite(value) else None
