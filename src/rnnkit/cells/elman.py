"""The Elman (simple) RNN cell. Elman, "Finding structure in time", Cognitive Science 1990."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import ACTIVATIONS, Cell, check_choice, check_size


class ElmanCell(Cell):
    r"""One step of the Elman RNN, equal to ``torch.nn.RNNCell`` for tanh and relu.

        h_t = f(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh),   f in {tanh, relu, sigmoid, identity}

    Parameters (torch's names and layouts): weight_ih (H, I), weight_hh (H, H),
    bias_ih (H,), bias_hh (H,). Shapes: x (B, I); h (B, H). Returns (h_t, h_t).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        nonlinearity: str = "tanh",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = self.output_size = check_size("hidden_size", hidden_size)
        self.state_sizes = (hidden_size,)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, ACTIVATIONS)
        self.weight_ih = nn.Parameter(torch.empty(hidden_size, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(hidden_size, hidden_size, **kw))
        self.bias_ih = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(hidden_size, **kw)) if bias else None
        self.reset_parameters()

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        f = ACTIVATIONS[self.nonlinearity]
        h = f(
            F.linear(x, self.weight_ih, self.bias_ih)
            + F.linear(state, self.weight_hh, self.bias_hh)
        )
        return h, h

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, nonlinearity={self.nonlinearity!r}"
