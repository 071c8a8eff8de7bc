"""The OCR task's pictures: a line's per-column posteriors and alignment (``rnnkit predict
--columns``), and CER against line length (``rnnkit eval``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLANK_NAME, SPACE_NAME = "∅", "␣"


def segments(alignment: list[int]) -> list[tuple[int, int, int]]:
    """The characters of a frame alignment: (first frame, end frame, label) of each maximal run
    of one non-blank label (a repeated character has a blank between its runs)."""
    out, t, T = [], 0, len(alignment)
    while t < T:
        end = t
        while end < T and alignment[end] == alignment[t]:
            end += 1
        if alignment[t]:
            out.append((t, end, alignment[t]))
        t = end
    return out


def plot_columns(
    image: np.ndarray,
    log_probs: np.ndarray,
    chars: str,
    alignment: list[int],
    text: str,
    stride: int,
    path: Path,
) -> Path:
    """The line image, with the frames the forced alignment gives each output character shaded
    and named on it; under it the posteriors of the blank and the output's characters per frame
    (a heat map); under that the most probable symbol per frame (the blank in grey).

    Args:
        image: (32, W) grey levels, ink high.
        log_probs: (T, C) per-frame log-probabilities (label 0 the blank, i the ``chars[i-1]``).
        chars: the alphabet; alignment: a label per frame (``rnnkit.ctc.forced_align``).
        text: the decoded output, for the title; stride: pixel columns per frame.
    """
    from rnnkit.plots import figure, save_figure

    T, _ = log_probs.shape
    W = image.shape[1]
    names = [BLANK_NAME, *(SPACE_NAME if c == " " else c for c in chars)]
    rows = [0] + sorted({k for k in alignment if k}, key=alignment.index)
    fig, _ = figure((min(max(6.0, W / 40), 60.0), 2.2 + 0.12 * len(rows)))
    fig.clear()  # three rows of unequal heights: image, posteriors, argmax
    ratios = [2.2, 0.25 + 0.1 * len(rows), 0.45]
    ax_img, ax_post, ax_best = fig.subplots(3, 1, sharex=True, height_ratios=ratios)
    ax_img.imshow(1.0 - image / max(float(image.max()), 1e-6), cmap="gray", aspect="auto",
                  extent=(0, W, image.shape[0], 0), vmin=0, vmax=1)  # fmt: skip
    for n, (first, end, k) in enumerate(segments(alignment)):
        a, b = first * stride, end * stride
        ax_img.axvspan(a, b, color=("tab:orange", "tab:blue")[n % 2], alpha=0.25, lw=0)
        ax_img.text((a + b) / 2, -2, names[k], ha="center", va="bottom", fontsize=8)
    ax_img.set_yticks([])
    ax_img.set_title(f"output: {text!r}  (shaded: the forced alignment's frames per character)",
                     fontsize=9, pad=16)  # fmt: skip
    post = np.exp(log_probs[:, rows]).T  # (rows, T)
    ax_post.imshow(post, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest",
                   extent=(0, T * stride, len(rows), 0))  # fmt: skip
    ax_post.set_yticks(np.arange(len(rows)) + 0.5, [names[k] for k in rows], fontsize=6)
    ax_post.set_ylabel("posterior")
    best = log_probs.argmax(1)
    for t, k in enumerate(best):
        ax_best.text((t + 0.5) * stride, 0.5, names[k], ha="center", va="center", fontsize=6,
                     color="0.7" if k == 0 else "black")  # fmt: skip
    ax_best.set_yticks([])
    ax_best.set_ylim(0, 1)
    ax_best.set_xlim(0, max(W, T * stride))
    ax_best.set_xlabel(f"pixel column (a frame every {stride}); bottom row: argmax per frame")
    out = save_figure(fig, path)
    if out.suffix.lower() == ".png":  # a noisy line image: a palette of 128 colours is 1/3 the size
        from PIL import Image

        with Image.open(out) as im:
            small = im.convert("RGB").quantize(128)
        small.save(out, optimize=True)
    return out


def plot_cer_by_length(results: dict, path: Path) -> Path:
    """CER (%) against line length, one line per (split, decoder), from ``rnnkit eval``'s JSON
    (``results[split][decoder]["by_length"]``: rows of {"lengths", "lines", "cer"})."""
    from rnnkit.plots import figure, save_figure

    fig, [[ax]] = figure((7.0, 4.0))
    styles = {"test": "-", "test_fonts": "--", "val": ":"}
    for split, decoders in results.items():
        for decoder, r in decoders.items():
            rows = r["by_length"]
            xs = [row["mid"] for row in rows]
            ax.plot(xs, [100 * row["cer"] for row in rows], styles.get(split, ":"), marker="o",
                    ms=3, label=f"{split}, {decoder}")  # fmt: skip
    ax.set_xlabel("line length (characters)")
    ax.set_ylabel("CER (%)")
    ax.set_title("character error rate against line length (held-out lines)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return save_figure(fig, path)
