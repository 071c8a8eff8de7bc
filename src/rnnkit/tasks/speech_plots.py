"""The speech task's column picture: an utterance's log-mel spectrogram, the model's posteriors
per output step (blank and the ten digits) and, below them, the best path (the most probable
symbol per step) and the forced alignment of the output (``rnnkit.ctc.forced_align``, the
Viterbi path of the decoded digits), on one time axis in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rnnkit.tasks.speech_features import HOP, SAMPLE_RATE
from rnnkit.tasks.speech_model import BLANK, LABELS

FRAME = HOP / SAMPLE_RATE  # seconds per feature frame; output steps are 2 frames


def segments(path: list[int]) -> list[tuple[int, int, int]]:
    """Runs of one label in a per-step path: (label, first step, last step + 1)."""
    out: list[tuple[int, int, int]] = []
    for t, k in enumerate(path):
        if out and out[-1][0] == k:
            out[-1] = (k, out[-1][1], t + 1)
        else:
            out.append((k, t, t + 1))
    return out


def _strip(ax, path: list[int], step: float, name: str) -> None:
    """One row of coloured spans, a digit written on each non-blank run."""
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    for k, a, b in segments(path):
        colour = "0.85" if k == BLANK else colours(k - 1)
        ax.axvspan(a * step, b * step, color=colour, lw=0)
        if k != BLANK:
            ax.text(
                (a + b) / 2 * step,
                0.5,
                LABELS[k],
                ha="center",
                va="center",
                fontsize=9,
                fontweight="bold",
                color="white",
            )
    ax.set_yticks([0.5], [name])
    ax.set_ylim(0, 1)


def plot_columns(features, log_probs, text: str, path, title: str = "") -> Path:
    """Draw the picture to ``path`` (see the module's docstring).

    Args:
        features: (T, 40) normalised log-mel frames of one utterance.
        log_probs: (T', 11) the model's log-probabilities per output step (T' = ⌈T/2⌉).
        text: the decoded digits (the forced alignment is of these).
        path: the PNG to write.
    """
    import torch

    from rnnkit.ctc import forced_align
    from rnnkit.plots import figure, save_figure

    feats = torch.as_tensor(features).detach().cpu().numpy()
    lp = torch.as_tensor(log_probs).detach().cpu()
    T, steps = feats.shape[0], lp.shape[0]
    step = T * FRAME / max(steps, 1)  # seconds per output step (20 ms)
    best = lp.argmax(-1).tolist()
    targets = [LABELS.index(c) for c in text]
    align = forced_align(lp, targets, blank=BLANK) if targets else [BLANK] * steps
    width = min(max(4.0, 2.0 + T * FRAME * 3.0), 14.0)
    fig, axes = figure((width, 5.0), 4, 1, sharex=True)
    axes[0, 0].get_gridspec().set_height_ratios([3, 3, 0.7, 0.7])
    ax = axes[0, 0]
    ax.imshow(
        feats.T,
        aspect="auto",
        origin="lower",
        interpolation="nearest",
        cmap="magma",
        extent=(0, T * FRAME, 0, feats.shape[1]),
    )
    ax.set_ylabel("mel channel")
    ax.set_title(title)
    ax = axes[1, 0]
    ax.imshow(
        lp.exp().numpy().T,
        aspect="auto",
        origin="upper",
        interpolation="nearest",
        cmap="Greys",
        vmin=0,
        vmax=1,
        extent=(0, steps * step, len(LABELS), 0),
    )
    ax.set_yticks(np.arange(len(LABELS)) + 0.5, ["blank", *LABELS[1:]], fontsize=7)
    ax.set_ylabel("posterior")
    _strip(axes[2, 0], best, step, "best path")
    _strip(axes[3, 0], align, step, "alignment")
    axes[3, 0].set_xlabel("time (s)")
    return save_figure(fig, path)
