"""The speech model: log-mel frames -> a strided convolution (2x fewer steps) -> a stack of
bidirectional recurrent layers (any rnnkit cell) -> per-step log-probabilities over the blank
and the ten digits, trained with CTC (``rnnkit.ctc``).

    u = ReLU(Conv1d_{k=5, stride 2}(x))             (T, B, 40) -> (T', B, C), T' = ⌈T/2⌉
    h = BiRNN_L(u)                                    (T', B, 2H), lengths respected
    log y = log_softmax(W h + b)                      (T', B, 11)

The output alphabet is the blank (index 0) and the digits 0-9 (indices 1-10): CTC over the
*digits* (one label per spoken word), not over the letters of the spelled-out words. The output
wanted is the digit string; "zero" and "oh" are two words for one label, which a letter model
would have to spell and then map back; a word is 30-60 frames of 20 ms, so one label per word
leaves CTC plenty of frames (a letter alphabet would need 4-5 labels in the same span); and the
closed vocabulary of ten words makes a language model over spellings pointless. Repeated digits
("55") are two labels with a blank between, as CTC needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.registry import cell_names
from rnnkit.config import option
from rnnkit.layers.torch_compat import BY_NAME
from rnnkit.tasks.speech_data import SpeechDataConfig
from rnnkit.tasks.speech_features import N_MELS
from rnnkit.train.train_config import TrainConfig

BLANK = 0
LABELS = ("<blank>", *"0123456789")  # index d + 1 is the digit d
CELLS = cell_names(output_projection=False)  # the cells whose output is the hidden state


@dataclass
class SpeechModelConfig:
    cell: str = option("gru", "the recurrent cell: " + ", ".join(CELLS))
    hidden_size: int = option(128, "H, the width of each direction of each recurrent layer")
    num_layers: int = option(3, "stacked bidirectional recurrent layers")
    conv_channels: int = option(128, "C, the strided convolution's output channels")
    dropout: float = option(0.1, "dropout between the recurrent layers")


def output_frames(frames: Tensor) -> Tensor:
    """Steps after the stride-2 convolution (kernel 5, padding 2): ⌊(T - 1)/2⌋ + 1, 0 for 0."""
    return torch.where(frames > 0, (frames - 1) // 2 + 1, torch.zeros_like(frames))


class SpeechModel(nn.Module):
    """Features (T, B, 40) and their frame counts (B,) -> (log-probabilities (T', B, 11), T'
    per item (B,)). Steps past an item's length are unspecified (its padding)."""

    def __init__(self, cfg: SpeechModelConfig) -> None:
        super().__init__()
        if cfg.cell not in CELLS:
            raise ValueError(f"cell must be one of {', '.join(CELLS)}, got {cfg.cell!r}")
        self.conv = nn.Conv1d(N_MELS, cfg.conv_channels, kernel_size=5, stride=2, padding=2)
        self.rnn = BY_NAME[cfg.cell](
            cfg.conv_channels,
            cfg.hidden_size,
            cfg.num_layers,
            bidirectional=True,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        self.head = nn.Linear(2 * cfg.hidden_size, len(LABELS))

    def forward(self, x: Tensor, frames: Tensor) -> tuple[Tensor, Tensor]:
        u = F.relu(self.conv(x.permute(1, 2, 0))).permute(2, 0, 1)  # (T', B, C)
        steps = output_frames(frames).clamp(max=u.shape[0])
        h, _ = self.rnn(u, lengths=steps.clamp(min=1).to(u.device))
        return F.log_softmax(self.head(h), dim=-1), steps


def digits_of(labels: list[int]) -> str:
    """Output labels (1-10) as the digit string."""
    return "".join(LABELS[k] for k in labels)


@dataclass
class SpeechConfig:
    model: SpeechModelConfig = field(default_factory=SpeechModelConfig)
    data: SpeechDataConfig = field(default_factory=SpeechDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
