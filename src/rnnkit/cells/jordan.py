"""The Jordan RNN cell: the previous *output* feeds the hidden layer.

Jordan, "Serial order: a parallel distributed processing approach", 1986.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import ACTIVATIONS, Cell, check_choice, check_size

OUTPUT_ACTIVATIONS = {**ACTIVATIONS, "softmax": lambda a: torch.softmax(a, dim=-1)}
OUTPUT_ACTIVATIONS.pop("relu")


class JordanCell(Cell):
    r"""One step of the Jordan RNN. The state is the previous output y_{t-1}.

        h_t = f(W_ih x_t + b_ih + W_yh y_{t-1} + b_yh),   f in {tanh, relu, sigmoid, identity}
        y_t = g(W_hy h_t + b_hy),                          g in {identity, tanh, sigmoid, softmax}

    Parameters: weight_ih (H, I), weight_yh (H, O), bias_ih (H,), bias_yh (H,), weight_hy (O, H),
    bias_hy (O,); O = output_size (default H). Shapes: x (B, I); y (B, O). Returns (y_t, y_t).
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        output_size: int | None = None,
        nonlinearity: str = "tanh",
        output_nonlinearity: str = "identity",
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        H, O = hidden_size, hidden_size if output_size is None else output_size
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = check_size("hidden_size", hidden_size)
        self.output_size = check_size("output_size", O)
        self.state_sizes = (O,)
        self.nonlinearity = check_choice("nonlinearity", nonlinearity, ACTIVATIONS)
        self.output_nonlinearity = check_choice(
            "output_nonlinearity", output_nonlinearity, OUTPUT_ACTIVATIONS
        )
        self.weight_ih = nn.Parameter(torch.empty(H, input_size, **kw))
        self.weight_yh = nn.Parameter(torch.empty(H, O, **kw))
        self.bias_ih = nn.Parameter(torch.empty(H, **kw)) if bias else None
        self.bias_yh = nn.Parameter(torch.empty(H, **kw)) if bias else None
        self.weight_hy = nn.Parameter(torch.empty(O, H, **kw))
        self.bias_hy = nn.Parameter(torch.empty(O, **kw)) if bias else None
        self.reset_parameters()

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        f, g = ACTIVATIONS[self.nonlinearity], OUTPUT_ACTIVATIONS[self.output_nonlinearity]
        h = f(
            F.linear(x, self.weight_ih, self.bias_ih)
            + F.linear(state, self.weight_yh, self.bias_yh)
        )
        y = g(F.linear(h, self.weight_hy, self.bias_hy))
        return y, y

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, output_size={self.output_size}, "
            f"nonlinearity={self.nonlinearity!r}, output_nonlinearity={self.output_nonlinearity!r}"
        )
