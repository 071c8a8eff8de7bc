"""Stacked (deep) recurrent layers, with dropout between them and optional residual connections."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.base import State
from rnnkit.layers.recurrent import length_mask


class Stacked(nn.Module):
    """Layers run one on top of the other; each layer's outputs are the next one's inputs.

    Args:
        layers: ``Recurrent`` or ``Bidirectional`` modules, bottom first.
        dropout: dropout on the outputs of every layer but the last, in training (torch.nn.LSTM's
            semantics).
        residual: add each layer's input to its output where the widths agree (every layer
            above the first in a uniform stack; the first too if input and output widths agree),
            as in Wu et al. 2016 (GNMT); the sum is what dropout and the next layer see.

    ``forward(xs, states=None, *, lengths=None) -> (ys, states)``: ``states`` is a list with one
    state per layer (or None for zeros); the returned list holds each layer's final state.
    """

    def __init__(self, layers: Sequence[nn.Module], dropout: float = 0.0, residual: bool = False):
        super().__init__()
        if not layers:
            raise ValueError("Stacked needs at least one layer")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {dropout}")
        self.layers = nn.ModuleList(layers)
        self.dropout, self.residual = dropout, residual

    def forward(
        self,
        xs: Tensor,
        states: Sequence[State | None] | None = None,
        *,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, list[State]]:
        if states is None:
            states = [None] * len(self.layers)
        if len(states) != len(self.layers):
            raise ValueError(f"got {len(states)} states for {len(self.layers)} layers")
        finals = []
        # padding positions stay zero through residual sums, as every layer's outputs are
        mask = (
            None
            if lengths is None
            else length_mask(torch.as_tensor(lengths, device=xs.device), len(xs), xs.dtype)
        )
        for l, (layer, state) in enumerate(zip(self.layers, states, strict=True)):
            ys, state = layer(xs, state, lengths=lengths)
            if self.residual and ys.shape[-1] == xs.shape[-1]:
                ys = ys + (xs if mask is None else xs * mask)
            if self.dropout and l < len(self.layers) - 1:
                ys = F.dropout(ys, self.dropout, self.training)
            xs = ys
            finals.append(state)
        return xs, finals
