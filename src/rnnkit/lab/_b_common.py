"""The old name of ``rnnkit.lab.experiment`` (kept so that old imports work), plus the lab's
old figure helpers, now ``rnnkit.plots.figure`` and ``rnnkit.plots.save_figure``."""

from __future__ import annotations

from pathlib import Path

from rnnkit.lab.experiment import *  # noqa: F403
from rnnkit.lab.experiment import DPI
from rnnkit.plots import figure as _figure
from rnnkit.plots import save_figure


def figure(nrows: int, ncols: int, figsize: tuple[float, float]):
    """``rnnkit.plots.figure(figsize, nrows, ncols, dpi=DPI)``."""
    return _figure(figsize, nrows, ncols, dpi=DPI)


def save(fig, path: Path) -> Path:
    """``rnnkit.plots.save_figure``."""
    return save_figure(fig, path)
