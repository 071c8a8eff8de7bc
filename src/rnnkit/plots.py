"""Every picture rnnkit draws, from the JSON-lines training log and from results.

The trainer appends one JSON object per line to ``<run_dir>/log.jsonl``, for example::

    {"step": 100, "split": "train", "loss": 1.93, "grad_norm": 0.84, "lr": 0.002, ...}
    {"step": 200, "split": "val", "loss": 1.85, "bpc": 2.67}

with the loss in nats per token; bits per token are loss / ln 2 (Shannon, "A mathematical
theory of communication", 1948; the unit of Graves 2013 and of the char-LM literature). This
module only reads that file (STYLE.md §4), so a plot can be redrawn at any time, also while
the run goes on.

Matplotlib is imported inside the functions, as nanoGPT imports wandb only when it logs to it:
``import rnnkit`` never pulls it in. Figures are made with matplotlib's object-oriented API on an
Agg canvas (``Figure`` + ``FigureCanvasAgg``, matplotlib's recipe for web servers), never
through pyplot: no global backend is switched, no figure is registered, nothing is left open.
(Hunter, "Matplotlib: a 2D graphics environment", 2007.)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from rnnkit.errors import UserError
from rnnkit.metrics import bits_per_token

DPI = 120
LOG_NAME = "log.jsonl"
CONFIG_NAME = "config.json"
SPLIT_LABELS = {"train": "train", "val": "validation", "valid": "validation", "test": "test"}

PathLike = str | os.PathLike


def read_log(path: PathLike) -> list[dict]:
    """The records of a JSON-lines log, one dict per (split, step), the last line written winning.

    A resumed run appends lines for steps already logged; its later line replaces the earlier
    one for the same (split, step) and takes its place in the order (so a log resumed at a
    checkpoint reads in step order). A last line that is not valid JSON (cut short by a kill) is
    ignored; blank lines are skipped; records without a ``step`` are kept as they are.

    Args:
        path: the log file.

    Returns:
        The records in file order.

    Raises:
        UserError: the file is missing, or a line other than the last is not a JSON object
            (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"training log not found: {path}")
    # Bytes, not text: a kill can also cut a multi-byte UTF-8 character in half.
    lines = [(n, raw) for n, raw in enumerate(path.read_bytes().split(b"\n"), 1) if raw.strip()]
    records: dict[Any, dict] = {}
    for i, (n, raw) in enumerate(lines):
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError:  # JSONDecodeError and UnicodeDecodeError both are
            record = None
        if not isinstance(record, dict):
            if i == len(lines) - 1:
                break  # the line a kill cut short
            text = raw[:60].decode("utf-8", errors="replace")
            raise UserError(f"{path}:{n}: expected a JSON object, got {text!r}")
        step = record.get("step")
        hashable = isinstance(step, (int, float, str)) and not isinstance(step, bool)
        key = (record.get("split"), step) if hashable else ("#line", n)
        records.pop(key, None)  # re-inserted at the end: the later line's place
        records[key] = record
    return list(records.values())


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _series(
    records: Sequence[Mapping], key: str, value=None
) -> dict[str, tuple[list[float], list[float]]]:
    """{split label: (steps, values)} of the records that hold ``key``, each sorted by step.

    ``value(record)`` computes the plotted value (default: ``record[key]``).
    """
    by_split: dict[str, list[tuple[float, float]]] = {}
    for r in records:
        if not (_is_number(r.get("step")) and _is_number(r.get(key))):
            continue
        y = value(r) if value is not None else r[key]
        by_split.setdefault(str(r.get("split", "train")), []).append((r["step"], y))
    rank = list(SPLIT_LABELS)
    out = {}
    for split in sorted(by_split, key=lambda s: (rank.index(s) if s in rank else len(rank), s)):
        points = sorted(by_split[split], key=lambda p: p[0])
        out[SPLIT_LABELS.get(split, split)] = ([p[0] for p in points], [p[1] for p in points])
    return out


def _bits(record: Mapping) -> float:
    bpc = record.get("bpc")
    return bpc if _is_number(bpc) else bits_per_token(record["loss"])


def figure(
    figsize: tuple[float, float],
    nrows: int = 1,
    ncols: int = 1,
    *,
    sharex: bool = False,
    dpi: int = DPI,
):
    """A new figure on an Agg canvas, outside pyplot: every picture of rnnkit starts here.

    Args:
        figsize: (width, height) in inches.
        nrows: rows of axes.
        ncols: columns of axes.
        sharex: whether the axes share their x axis.
        dpi: dots per inch, kept by ``save_figure``.

    Returns:
        (figure, axes): axes as an ``nrows x ncols`` array, e.g. ``fig, [[ax]] = figure(...)``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, sharex=sharex, squeeze=False)


def save_figure(fig, path: PathLike) -> Path:
    """Write a figure from ``figure`` as an image (PNG, SVG, PDF: by the suffix) at its dpi.

    Args:
        fig: the figure.
        path: the image file; missing parent directories are created.

    Returns:
        The path.

    Raises:
        UserError: the path cannot be written or its format is unknown, naming the path.
    """
    path = Path(path)
    check_writable(path, "the plot")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi="figure")
    except OSError as e:
        raise UserError(f"cannot write the plot {path}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. "Format 'pgn' is not supported (supported formats: ...)"
        raise UserError(f"cannot write the plot {path}: {e}") from None
    fig.clear()  # frees the artists now; the figure is in no registry, so nothing else holds it
    return path


def check_writable(path: PathLike, what: str) -> None:
    """Refuse, in one line, an output path that is a directory or lies under a file.

    Args:
        path: the file to be written.
        what: what it is, for the message ("the plot", "--out").

    Raises:
        UserError: ``path`` is a directory, or an ancestor of it is a file.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {what} {path}: it is a directory, expected a file name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot write {what} {path}: {parent} is a file, not a directory")
            break


def _draw(
    ax, series: Mapping[str, tuple[Sequence, Sequence]], hlines: Mapping[str, float] | None = None
) -> None:
    """One line per series (markers when sparse, e.g. validation points), dashed hlines."""
    for label, (x, y) in series.items():
        if len(x) != len(y):
            raise ValueError(f"series {label!r} has {len(x)} x values but {len(y)} y values")
        marker = "o" if len(x) <= 40 else None
        ax.plot(x, y, label=label, marker=marker, markersize=3.5, linewidth=1.4)
    for label, y in (hlines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1.2, color="0.35", label=f"{label} = {y:g}")
    ax.grid(True, which="major", alpha=0.3)
    if series or hlines:
        ax.legend(fontsize=9)


def plot_curves(
    series: Mapping[str, tuple[Sequence, Sequence]],
    path: PathLike,
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    logy: bool = False,
    hlines: Mapping[str, float] | None = None,
) -> Path:
    """Curves y(x) on one axes, saved as an image (PNG unless the suffix says otherwise).

    Args:
        series: {label: (xs, ys)}, drawn in order; sparse series (≤ 40 points) get markers.
        path: the file to write; its directory is created.
        xlabel, ylabel, title: the labels.
        logy: a logarithmic y axis.
        hlines: {label: y}: dashed horizontal reference lines, e.g. a clipping threshold.

    Returns:
        The path written.
    """
    if not series:
        raise ValueError(f"plot_curves needs at least one series for {title!r}")
    fig, [[ax]] = figure((8, 4.5))
    _draw(ax, series, hlines)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return save_figure(fig, path)


def wrap_title(title: str, width_inches: float) -> str:
    """A long title (a whole input sentence) broken into lines that fit the figure's width
    (about 10 characters an inch at the title's size) instead of running off its edges."""
    import textwrap

    return textwrap.fill(title, width=int(width_inches * 10)) if title else title


def plot_heatmap(
    matrix,
    path: PathLike,
    *,
    xlabels: Sequence[str] | None = None,
    ylabels: Sequence[str] | None = None,
    title: str = "",
    xlabel: str = "",
    ylabel: str = "",
    cmap: str = "viridis",
) -> Path:
    """A matrix as an image with a colour bar: row i is drawn at height i (top to bottom).

    For attention weights (rows: output steps, columns: input steps) and hidden-unit
    activations (rows: units, columns: time).

    Args:
        matrix: a 2-D array (numpy, a torch tensor, nested lists); NaN cells are left blank.
        path: the file to write; its directory is created.
        xlabels, ylabels: one label per column / row (e.g. the tokens); thinned to at most
            ~40 shown when there are more.
        title, xlabel, ylabel: the labels.
        cmap: a matplotlib colour map name.

    Returns:
        The path written.
    """
    import numpy as np

    if hasattr(matrix, "detach"):  # a torch tensor, maybe on a GPU or requiring grad
        matrix = matrix.detach().cpu().numpy()
    m = np.asarray(matrix, dtype=float)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"plot_heatmap needs a non-empty 2-D matrix, got shape {m.shape}")
    rows, cols = m.shape
    for name, labels, n in (("xlabels", xlabels, cols), ("ylabels", ylabels, rows)):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} labels for {n} {name[0]} positions")
    figsize = (min(max(3.0 + 0.25 * cols, 5.0), 12.0), min(max(1.5 + 0.25 * rows, 3.5), 9.0))
    fig, [[ax]] = figure(figsize)
    image = ax.imshow(m, aspect="auto", interpolation="nearest", cmap=cmap)
    fig.colorbar(image, ax=ax)
    for labels, n, set_ticks, set_labels, axis in (
        (xlabels, cols, ax.set_xticks, ax.set_xticklabels, "x"),
        (ylabels, rows, ax.set_yticks, ax.set_yticklabels, "y"),
    ):
        if labels is not None:
            every = max(1, math.ceil(n / 40))
            ticks = list(range(0, n, every))
            shown = [str(labels[i]) for i in ticks]
            # Characters stand upright; words under the x axis are turned to fit.
            rotation = 90 if axis == "x" and max(map(len, shown), default=0) > 2 else 0
            set_ticks(ticks)
            set_labels(shown, rotation=rotation, fontsize=8)
    ax.set(title=wrap_title(title, figsize[0]), xlabel=xlabel, ylabel=ylabel)
    return save_figure(fig, path)


def _clip_norm(run_dir: Path) -> float | None:
    """``train.clip_norm`` of the run's config.json if it is a number > 0, else None."""
    path = run_dir / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UserError(f"{path}: not valid JSON ({e})") from None
    config = saved.get("config", saved) if isinstance(saved, dict) else {}
    train = config.get("train") if isinstance(config, dict) else None
    clip = train.get("clip_norm") if isinstance(train, dict) else None
    return float(clip) if _is_number(clip) and clip > 0 else None


def plot_run(run_dir: PathLike, out_dir: PathLike | None = None) -> list[Path]:
    """Draw a run's curves from ``<run_dir>/log.jsonl``.

    Writes, for what the log holds (a picture without data is skipped):

    - ``loss.png``: train and validation loss against step, in nats per token (top) and in
      bits per token (bottom: the logged ``bpc``, else loss / ln 2);
    - ``grad_norm.png``: the gradient norm before clipping, log scale, with the clipping
      threshold as a dashed line when the run's config.json has ``train.clip_norm`` > 0;
    - ``lr.png``: the learning rate.

    Args:
        run_dir: the run directory.
        out_dir: where to write the images (created); default ``run_dir``.

    Returns:
        The paths written, in the order above.

    Raises:
        UserError: no log in ``run_dir``, a corrupt line, or nothing in it to plot.
    """
    run_dir = Path(run_dir)
    log = run_dir / LOG_NAME
    records = read_log(log)
    out = Path(out_dir) if out_dir is not None else run_dir
    name = run_dir.resolve().name
    written = []

    loss = _series(records, "loss")
    if loss:
        fig, [[ax_nats], [ax_bits]] = figure((8, 6.5), nrows=2, sharex=True)
        _draw(ax_nats, loss)
        ax_nats.set(ylabel="loss (nats/token)", title=f"{name}: loss")
        _draw(ax_bits, _series(records, "loss", _bits))
        ax_bits.set(xlabel="step", ylabel="bits/token")
        written.append(save_figure(fig, out / "loss.png"))

    grad_norm = _series(records, "grad_norm")
    if grad_norm:
        clip = _clip_norm(run_dir)
        written.append(
            plot_curves(
                grad_norm,
                out / "grad_norm.png",
                xlabel="step",
                ylabel="gradient norm (before clipping)",
                title=f"{name}: gradient norm",
                logy=True,
                hlines={"clip_norm": clip} if clip is not None else None,
            )
        )

    lr = _series(records, "lr")
    if lr:
        written.append(
            plot_curves(
                lr,
                out / "lr.png",
                xlabel="step",
                ylabel="learning rate",
                title=f"{name}: learning rate",
            )
        )

    if not written:
        raise UserError(f"{log}: no loss, grad_norm or lr records to plot")
    return written


def plot_attention(
    weights,
    path: PathLike,
    *,
    source: Sequence[str],
    output: Sequence[str],
    title: str = "attention",
) -> Path:
    """An attention map: one row per output token (down), one column per input token (across);
    cell (t, s) is the weight α_{t,s} output step t gave input position s (each row sums to 1).

    Args:
        weights: (T_out, S) matrix (a tensor or an array).
        path: the PNG to write.
        source, output: the input and output tokens (the axis labels).
        title: the figure's title.
    """
    return plot_heatmap(
        weights,
        path,
        xlabels=list(source),
        ylabels=list(output),
        title=title,
        xlabel="input",
        ylabel="output",
        cmap="Greys",
    )


def plot_by_length(
    results: Mapping[str, Mapping[str, float]],
    path: PathLike,
    *,
    metric: str = "BLEU",
    title: str = "",
    counts: Mapping[str, int] | None = None,
) -> Path:
    """A metric per source-length bucket, one group of bars per bucket, one bar per system.

    Args:
        results: {system label: {bucket label: value}}; buckets in the order of the first system.
        path: the PNG to write.
        metric: the y axis label.
        title: the figure's title.
        counts: {bucket: number of examples}, shown under the bucket labels.
    """
    if not results:
        raise ValueError("plot_by_length needs at least one system")
    buckets = list(next(iter(results.values())))
    fig, [[ax]] = figure((8, 4.5))
    width = 0.8 / len(results)
    for i, (label, values) in enumerate(results.items()):
        xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(buckets))]
        ax.bar(xs, [values.get(b, math.nan) for b in buckets], width=width, label=label)
    names = [f"{b}\n(n={counts[b]})" if counts and b in counts else b for b in buckets]
    ax.set_xticks(range(len(buckets)))
    ax.set_xticklabels(names, fontsize=8)
    ax.set(xlabel="source length (tokens)", ylabel=metric, title=title)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=9)
    return save_figure(fig, path)
