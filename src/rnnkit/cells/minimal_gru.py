"""The minimal GRU: only an update gate. Zhou et al., "Minimal gated unit for recurrent neural
networks", 2016; the lectures' simplified GRU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import Cell, check_size


class MinimalGRUCell(Cell):
    r"""One step of the GRU with only an update gate, in the lectures' notation (c is the state).

        u_t  = σ(W_u [c_{t-1}, x_t] + b_u)      = σ(W_iu x + b_iu + W_hu c + b_hu)
        c~_t = tanh(W_c [c_{t-1}, x_t] + b_c)   = tanh(W_ic x + b_ic + W_hc c + b_hc)
        c_t  = u_t ⊙ c~_t + (1 - u_t) ⊙ c_{t-1}

    Gate order u, c in torch's layout: weight_ih (2H, I), weight_hh (2H, H), bias_ih (2H,),
    bias_hh (2H,). Shapes: x (B, I); c (B, H). Returns (c_t, c_t).
    """

    def __init__(
        self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        H = hidden_size
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = self.output_size = check_size("hidden_size", hidden_size)
        self.state_sizes = (H,)
        self.weight_ih = nn.Parameter(torch.empty(2 * H, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(2 * H, H, **kw))
        self.bias_ih = nn.Parameter(torch.empty(2 * H, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(2 * H, **kw)) if bias else None
        self.reset_parameters()

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        c = state
        gates = F.linear(x, self.weight_ih, self.bias_ih) + F.linear(
            c, self.weight_hh, self.bias_hh
        )
        u, c_tilde = gates.chunk(2, dim=-1)
        u, c_tilde = u.sigmoid(), c_tilde.tanh()
        c = u * c_tilde + (1 - u) * c
        return c, c
