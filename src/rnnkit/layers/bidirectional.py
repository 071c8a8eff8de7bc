"""Bidirectional: one Recurrent forward in time, one backward, outputs concatenated."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State


class Bidirectional(nn.Module):
    """Runs ``forward_layer`` over each sequence and ``backward_layer`` over it reversed.

    The backward direction runs over the valid part of each sequence only (from its last real
    step to its first), so padding never leaks into it. Outputs are concatenated on the feature
    axis, forward first: (T, B, O_fwd + O_bwd). The state is a pair (forward, backward).
    """

    def __init__(self, forward_layer: nn.Module, backward_layer: nn.Module) -> None:
        super().__init__()
        if forward_layer is backward_layer:
            raise ValueError(
                "Bidirectional needs two distinct layers, one per direction; got one module twice"
            )
        self.forward_layer, self.backward_layer = forward_layer, backward_layer

    def forward(
        self,
        xs: Tensor,
        state: tuple[State, State] | None = None,
        *,
        lengths: Tensor | None = None,
    ) -> tuple[Tensor, tuple[State, State]]:
        s_fwd, s_bwd = (None, None) if state is None else state
        y_fwd, s_fwd = self.forward_layer(xs, s_fwd, lengths=lengths)
        y_bwd, s_bwd = self.backward_layer(xs, s_bwd, lengths=lengths, reverse=True)
        return torch.cat([y_fwd, y_bwd], dim=-1), (s_fwd, s_bwd)
