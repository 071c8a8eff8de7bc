"""Pictures of a classifier's evaluation: the confusion matrix, and words shaded by a weight.

Both draw with ``rnnkit.plots.figure`` on an Agg canvas (never pyplot) and write through
``rnnkit.plots.save_figure``, so an output path that cannot be written is one line naming it.

The confusion matrix ``C`` has one row per true class and one column per predicted class:
``C[i, j]`` is the number of examples of class i predicted as j, so the diagonal holds the
correct ones and accuracy = trace(C) / sum(C). Coloured by row share ``C[i, j] / sum_j C[i, j]``
(the recall of class i on the diagonal), a rare class is as visible as a frequent one; the cells
are labelled with the counts themselves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from rnnkit.plots import PathLike, check_writable, figure, save_figure, wrap_title

#: Above this many classes the counts are not written in the cells (they would not be legible);
#: the colours and both axes' labels still are.
MAX_ANNOTATED = 25


def _as_array(matrix):
    import numpy as np

    if hasattr(matrix, "detach"):  # a torch tensor, maybe on a GPU
        matrix = matrix.detach().cpu().numpy()
    return np.asarray(matrix, dtype=float)


def plot_confusion(
    matrix,
    labels: Sequence[str],
    path: PathLike,
    title: str | None = None,
    normalize: bool = True,
) -> Path:
    """A confusion matrix as an image: rows the true class, columns the predicted class.

    Args:
        matrix: K x K counts (numpy, a torch tensor, nested lists), ``matrix[i][j]`` = examples
            of class i predicted as class j.
        labels: the K class names, in the matrix's order (both axes).
        path: the image file (PNG unless the suffix says otherwise); its directory is created.
        title: the figure's title; the accuracy trace/sum and the number of examples are added.
        normalize: colour each cell by its share of its row (True; a row of zeros stays 0) or
            by the raw count (False). The cells show the counts either way (for K <= 25).

    Returns:
        The path written.

    Raises:
        ValueError: the matrix is not square and non-empty, has negative or non-finite
            entries, or the labels do not match it (a programming error, not a user's).
        UserError: the path cannot be written (one line naming it).
    """
    import numpy as np

    check_writable(path, "the plot")
    m = _as_array(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise ValueError(f"plot_confusion needs a non-empty square matrix, got shape {m.shape}")
    if not np.isfinite(m).all() or (m < 0).any():
        raise ValueError("plot_confusion needs finite, non-negative counts")
    k = m.shape[0]
    if len(labels) != k:
        raise ValueError(f"plot_confusion got {len(labels)} labels for a {k} x {k} matrix")
    totals = m.sum(axis=1, keepdims=True)
    shares = np.divide(m, totals, out=np.zeros_like(m), where=totals > 0)
    colours = shares if normalize else m

    side = min(max(3.5 + 0.3 * k, 5.0), 16.0)  # inches: 0.3" a class up to ~40 classes
    tick_size = 9 if k <= 15 else max(7.0, 9 - (k - 15) * 0.1)
    fig, [[ax]] = figure((side + 1.2, side))
    vmax = 1.0 if normalize else max(float(m.max()), 1.0)
    image = ax.imshow(colours, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.02)
    bar.set_label("share of the true class" if normalize else "examples")
    names = [str(label) for label in labels]
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    rotation = 90 if k > 6 or max(map(len, names)) > 6 else 0
    ax.set_xticklabels(names, rotation=rotation, fontsize=tick_size)
    ax.set_yticklabels(names, fontsize=tick_size)
    if k <= MAX_ANNOTATED:
        cell_size = max(5.0, 11 - 0.25 * k)
        for i in range(k):
            for j in range(k):
                if m[i, j] == 0 and i != j:
                    continue  # empty off-diagonal cells stay blank: the errors stand out
                dark = colours[i, j] > 0.55 * vmax
                ax.text(
                    j,
                    i,
                    f"{m[i, j]:g}",
                    ha="center",
                    va="center",
                    fontsize=cell_size,
                    color="white" if dark else "black",
                )
    total = float(m.sum())
    accuracy = float(np.trace(m)) / total if total else math.nan
    heading = f"{title}\n" if title else ""
    heading += f"accuracy {accuracy:.2%} of {total:g} examples"
    ax.set(
        title=wrap_title(heading, side) if len(heading) > 10 * side else heading,
        xlabel="predicted",
        ylabel="true",
    )
    return save_figure(fig, path)


def plot_word_weights(
    words: Sequence[str],
    weights: Sequence[float],
    path: PathLike,
    title: str | None = None,
) -> Path:
    """Words laid out as text, each on a background shaded by its weight (e.g. attention α_t,
    ``sum_t α_t = 1``), with the weight printed under it; long sentences wrap onto more lines.

    Args:
        words: the tokens in order.
        weights: one non-negative weight per word; the darkest shade is the largest weight.
        path: the image file; its directory is created.
        title: the figure's title (e.g. the prediction and its probability).

    Returns:
        The path written.

    Raises:
        ValueError: no words, or not one weight per word.
        UserError: the path cannot be written.
    """
    from matplotlib import colormaps

    check_writable(path, "the plot")
    w = [float(x) for x in (weights.tolist() if hasattr(weights, "tolist") else weights)]
    if not words or len(w) != len(words):
        raise ValueError(f"plot_word_weights needs one weight per word: {len(words)} vs {len(w)}")
    top = max(max(w), 1e-12)
    width = 10.0  # inches; about 10 characters an inch at font size 12
    lines, line, used = [], [], 0.0
    for word, weight in zip(words, w, strict=True):
        length = 0.12 * max(len(word), 3) + 0.15
        if line and used + length > width - 0.4:
            lines.append(line)
            line, used = [], 0.0
        line.append((word, weight, used + 0.2))
        used += length
    lines.append(line)
    height = 0.9 * len(lines) + (0.8 if title else 0.3)
    fig, [[ax]] = figure((width, height))
    ax.set_xlim(0, width)
    ax.set_ylim(len(lines) * 0.9, 0)
    ax.axis("off")
    cmap = colormaps["Reds"]
    for row, items in enumerate(lines):
        for word, weight, x in items:
            share = weight / top
            ax.text(
                x,
                row * 0.9 + 0.35,
                word,
                fontsize=12,
                va="center",
                color="white" if share > 0.6 else "black",
                bbox={"boxstyle": "round,pad=0.25", "facecolor": cmap(share), "edgecolor": "none"},
            )
            ax.text(x, row * 0.9 + 0.72, f"{weight:.2f}", fontsize=7, va="center", color="0.3")
    if title:
        ax.set_title(wrap_title(title, width), fontsize=11)
    return save_figure(fig, path)
