"""Draws docs/architecture.png: rnnkit's layers, and how data flows through `rnnkit train`.

.venv/bin/python docs/draw_architecture.py
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

LAYERS = [  # top to bottom: name, what it holds
    ("cli", "rnnkit train | sample | score | predict | eval | plot | lab | bench"),
    ("tasks", "charlm, dates, translate, ocr, speech, pos, ner, sentiment, ...;  train/"),
    ("models", "LanguageModel, Seq2Seq + attention, SequenceModel;  decoding"),
    ("layers", "Recurrent (the time loop), Stacked, Bidirectional, RNN/LSTM/GRU twins"),
    ("kernels", "whole-sequence forward + hand-derived BPTT, one autograd.Function a cell"),
    ("cells", "one step: Elman, Jordan, LSTM, GRU, minimal GRU"),
]
FLOW = [
    "text file",
    "vocabulary",
    "token ids (memory-mapped)",
    "B streams",
    "windows of k steps",
    "model: embedding -> layers -> linear",
    "loss: cross-entropy",
    "trainer: clip, step, log, evaluate",
    "checkpoint (safetensors + JSON)",
    "sample / score",
]


def box(ax, x, y, w, h, text, color, size=9, bold=False):
    style = "round,pad=0.004,rounding_size=0.012"
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle=style, fc=color, ec="0.3"))
    weight = "bold" if bold else "normal"
    ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=size, weight=weight)


def arrow(ax, x, y0, y1):
    ax.annotate("", (x, y1), (x, y0), arrowprops={"arrowstyle": "->", "color": "0.3"})


def main() -> None:
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.2), width_ratios=[1.6, 1])
    for ax in (left, right):
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(0, 1)
        ax.axis("off")
    left.set_title("the layers: each uses only those below it", fontsize=11)
    h, gap = 0.11, 0.05
    for i, (name, what) in enumerate(LAYERS):
        y = 1 - (i + 1) * (h + gap) + gap / 2
        box(left, 0.0, y, 0.16, h, name, "#cfe2f3", size=11, bold=True)
        box(left, 0.2, y, 0.8, h, what, "#f3f3f3", size=8.5)
        if i < len(LAYERS) - 1:
            arrow(left, 0.08, y, y - gap)
    right.set_title("data through `rnnkit train charlm`", fontsize=11)
    h, gap = 0.062, 0.036
    for i, step in enumerate(FLOW):
        y = 1 - (i + 1) * (h + gap) + gap / 2
        box(right, 0.05, y, 0.9, h, step, "#d9ead3" if i not in (5, 7) else "#fce5cd", size=9)
        if i < len(FLOW) - 1:
            arrow(right, 0.5, y, y - gap)
    fig.tight_layout()
    fig.savefig(Path(__file__).with_name("architecture.png"), dpi=90)


if __name__ == "__main__":
    main()
