"""The GRU cell in both conventions.

Cho et al., "Learning phrase representations using RNN encoder-decoder", 2014 (reset before the
recurrent product); the cuDNN/torch form applies it after (``reset_after=True``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import Cell, check_size


class GRUCell(Cell):
    r"""One GRU step. Gate order r, z, n as in ``torch.nn.GRUCell`` (equal to it by default).

        r = σ(W_ir x + b_ir + W_hr h + b_hr)
        z = σ(W_iz x + b_iz + W_hz h + b_hz)
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))      reset_after=True  (torch, cuDNN)
        n = tanh(W_in x + b_in + W_hn (r ⊙ h) + b_hn)      reset_after=False (Cho et al. 2014)
        h' = (1 - z) ⊙ n + z ⊙ h

    (The lectures write the update gate the other way round, Γ_u = 1 - z.)
    Parameters: weight_ih (3H, I), weight_hh (3H, H), bias_ih (3H,), bias_hh (3H,).
    Shapes: x (B, I); h (B, H). Returns (h', h').
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        bias: bool = True,
        *,
        reset_after: bool = True,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        H = hidden_size
        self.input_size = check_size("input_size", input_size)
        self.hidden_size = self.output_size = check_size("hidden_size", hidden_size)
        self.state_sizes = (H,)
        self.reset_after = reset_after
        self.weight_ih = nn.Parameter(torch.empty(3 * H, input_size, **kw))
        self.weight_hh = nn.Parameter(torch.empty(3 * H, H, **kw))
        self.bias_ih = nn.Parameter(torch.empty(3 * H, **kw)) if bias else None
        self.bias_hh = nn.Parameter(torch.empty(3 * H, **kw)) if bias else None
        self.reset_parameters()

    def forward(self, x: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        h, H = state, self.hidden_size
        xr, xz, xn = F.linear(x, self.weight_ih, self.bias_ih).chunk(3, dim=-1)
        if self.reset_after:
            hr, hz, hn = F.linear(h, self.weight_hh, self.bias_hh).chunk(3, dim=-1)
            r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
            n = (xn + r * hn).tanh()
        else:
            b = self.bias_hh
            hr, hz = F.linear(h, self.weight_hh[: 2 * H], None if b is None else b[: 2 * H]).chunk(
                2, dim=-1
            )
            r, z = (xr + hr).sigmoid(), (xz + hz).sigmoid()
            n = (
                xn + F.linear(r * h, self.weight_hh[2 * H :], None if b is None else b[2 * H :])
            ).tanh()
        h = (1 - z) * n + z * h
        return h, h

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}, reset_after={self.reset_after}"
