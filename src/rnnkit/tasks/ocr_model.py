"""The line reader of ``rnnkit train ocr``: pixel columns are time steps.

    x (B, 1, 32, W) ─ conv front end (n = model.conv layers, 0-4) ─> (B, c_n, 32/2^n, W/s)
        each layer: 3x3 convolution (padding 1) -> batch norm -> ReLU -> max-pool,
        pools 2x2, 2x2, 2x1, 2x1 (so the horizontal stride s = 2^min(n, 2))
    columns: (T = W/s, B, c_n·32/2^n)        (model.conv 0: the raw columns, T = W, 32 features)
    ─ stacked bidirectional recurrent layers (any rnnkit cell, lengths respected)
    ─ linear ─ log-softmax over the alphabet plus the blank (index 0)       -> (T, B, 1 + |A|)

Each max-pool of width 2 floors the width, so the output lengths are the input widths halved
(rounded down) once per such pool: ``output_lengths``. The CTC loss must be given those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from rnnkit.cells.registry import cell_names
from rnnkit.config import option
from rnnkit.layers.torch_compat import BY_NAME

POOLS = ((2, 2), (2, 2), (2, 1), (2, 1))  # (height, width) of each conv layer's max-pool
WIDTHS = (1, 2, 4, 4)  # each conv layer's channels, as multiples of model.channels
MAX_CONV = len(POOLS)


@dataclass
class OCRModelConfig:
    conv: int = option(3, "convolutional layers before the recurrent ones, 0-4 (0: raw columns)")
    channels: int = option(16, "channels of the first conv layer (then x2, x4, x4)")
    cell: Literal[cell_names()] = option("lstm", "the recurrent cell")  # type: ignore[valid-type]
    hidden_size: int = option(128, "H, the width of each direction of each recurrent layer")
    num_layers: int = option(2, "stacked bidirectional recurrent layers")
    dropout: float = option(0.0, "dropout between the recurrent layers and before the output")


def stride(conv: int) -> int:
    """The horizontal stride of ``conv`` layers: frames are this many pixel columns apart."""
    out = 1
    for _, w in POOLS[:conv]:
        out *= w
    return out


def output_lengths(widths: Tensor, conv: int) -> Tensor:
    """Frames out of the front end for images ``widths`` pixels wide (floor once per pool)."""
    out = widths.clone()
    for _, w in POOLS[:conv]:
        out = torch.div(out, w, rounding_mode="floor")
    return out


class LineReader(nn.Module):
    """Conv front end -> bidirectional recurrent layers -> per-frame log-softmax.

    ``forward(x, widths) -> (log_probs (T, B, C), lengths (B,))``: x (B, 1, 32, W) float, ink
    high, padded on the right with zeros; widths (B,) the real widths; C = ``num_classes``
    (blank 0, then the alphabet).
    """

    def __init__(self, num_classes: int, cfg: OCRModelConfig, height: int = 32) -> None:
        super().__init__()
        if not 0 <= cfg.conv <= MAX_CONV:
            raise ValueError(f"conv must be 0-{MAX_CONV}, got {cfg.conv}")
        if cfg.channels < 1:
            raise ValueError(f"channels must be a positive integer, got {cfg.channels}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
        self.conv_layers = cfg.conv
        layers: list[nn.Module] = []
        c_in, h = 1, height
        for i in range(cfg.conv):
            c_out = cfg.channels * WIDTHS[i]
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(POOLS[i]),
            ]
            c_in, h = c_out, h // POOLS[i][0]
        self.front = nn.Sequential(*layers)
        self.features = c_in * h
        self.rnn = BY_NAME[cfg.cell](
            self.features,
            cfg.hidden_size,
            cfg.num_layers,
            bidirectional=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(2 * cfg.hidden_size, num_classes)

    def forward(self, x: Tensor, widths: Tensor) -> tuple[Tensor, Tensor]:
        f = self.front(x)  # (B, c, h, T)
        B, c, h, T = f.shape
        columns = f.reshape(B, c * h, T).permute(2, 0, 1)  # (T, B, c·h)
        lengths = output_lengths(widths, self.conv_layers).clamp(1, T)
        ys, _ = self.rnn(columns, lengths=lengths.cpu())
        return self.head(self.drop(ys)).log_softmax(-1), lengths
