"""Stacked (deep) recurrent layers, with dropout between them and optional residual connections."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rnnkit.cells.base import State
from rnnkit.layers.recurrent import Recurrent, length_mask


class Stacked(nn.Module):
    """Layers run one on top of the other; each layer's outputs are the next one's inputs.

    Args:
        layers: ``Recurrent`` or ``Bidirectional`` modules, bottom first.
        dropout: dropout on the outputs of every layer but the last, in training (torch.nn.LSTM's
            semantics), a number in [0, 1] (1 zeroes them); may be changed after construction.
        residual: add each layer's input to its output where the widths agree (every layer
            above the first in a uniform stack; the first too if input and output widths agree),
            as in Wu et al. 2016 (GNMT); the sum is what dropout and the next layer see.
        checkpoint_steps: k > 0 recomputes instead of storing (checkpointing through time): in
            training, each layer keeps for backward only its input and its states at every k-th
            step, and backward recomputes one chunk of k steps at a time: memory
            O(T·(input + output) + k·activations) a layer instead of O(T·activations), for one
            more forward pass of the recurrence. A ``Recurrent`` layer whose cell has a kernel
            recomputes inside the kernel (``rnnkit.kernels.recompute``); any other layer runs
            its chunks under ``torch.utils.checkpoint`` (non-reentrant, RNG state preserved).
            Layers and dropout run in the same order as with k = 0, so the values, the dropout
            masks and the gradients are the same (tested). Unidirectional layers only: a
            reverse direction needs the whole sequence.

    ``forward(xs, states=None, *, lengths=None) -> (ys, states)``: ``states`` is a list with one
    state per layer (or None for zeros); the returned list holds each layer's final state.
    """

    def __init__(
        self,
        layers: Sequence[nn.Module],
        dropout: float = 0.0,
        residual: bool = False,
        checkpoint_steps: int = 0,
    ):
        super().__init__()
        if not layers:
            raise ValueError("Stacked needs at least one layer")
        if isinstance(checkpoint_steps, bool) or not isinstance(checkpoint_steps, int):
            raise ValueError(f"checkpoint_steps must be an integer, got {checkpoint_steps!r}")
        if checkpoint_steps < 0:
            raise ValueError(f"checkpoint_steps must be >= 0 (0: off), got {checkpoint_steps}")
        if checkpoint_steps and any(hasattr(layer, "backward_layer") for layer in layers):
            raise ValueError("checkpoint_steps needs unidirectional layers (no Bidirectional)")
        self.layers = nn.ModuleList(layers)
        self.dropout, self.residual = dropout, residual  # dropout: checked by its setter
        self.checkpoint_steps = checkpoint_steps

    @property
    def dropout(self) -> float:
        return self._dropout

    @dropout.setter
    def dropout(self, p: float) -> None:
        # checked here, on every assignment, so a value set after construction is checked too
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise ValueError(f"dropout must be a number in [0, 1], got {p!r}")
        self._dropout = float(p)

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
        k = self.checkpoint_steps if len(xs) > self.checkpoint_steps else 0
        return self._layers(xs, states, lengths, k if torch.is_grad_enabled() else 0)

    def _layers(
        self, xs: Tensor, states: Sequence[State | None], lengths: Tensor | None, k: int = 0
    ) -> tuple[Tensor, list[State]]:
        finals = []
        # padding positions stay zero through residual sums, as every layer's outputs are
        mask = (
            None
            if lengths is None
            else length_mask(torch.as_tensor(lengths, device=xs.device), len(xs), xs.dtype)
        )
        for l, (layer, state) in enumerate(zip(self.layers, states, strict=True)):
            if not k:
                ys, state = layer(xs, state, lengths=lengths)
            elif isinstance(layer, Recurrent):
                ys, state = layer(xs, state, lengths=lengths, checkpoint_steps=k)
            else:
                ys, state = checkpoint_layer(layer, xs, state, lengths, k)
            if self.residual and ys.shape[-1] == xs.shape[-1]:
                ys = ys + (xs if mask is None else xs * mask)
            if self.dropout and l < len(self.layers) - 1:
                ys = F.dropout(ys, self.dropout, self.training)
            xs = ys
            finals.append(state)
        return xs, finals


def checkpoint_layer(
    layer: nn.Module, xs: Tensor, state: State | None, lengths: Tensor | None, k: int
) -> tuple[Tensor, State]:
    """A layer other than ``Recurrent`` over chunks of k steps, each chunk under
    ``torch.utils.checkpoint`` (non-reentrant, RNG state preserved), carrying its state."""
    if lengths is not None:
        lengths = torch.as_tensor(lengths, device=xs.device)
    outputs = []
    # split, not xs[a:b] in a loop: one op whose backward concatenates the chunk gradients
    for i, chunk in enumerate(xs.split(k)):
        part = None if lengths is None else (lengths - i * k).clamp(0, len(chunk))
        ys, state = checkpoint(layer, chunk, state, lengths=part, use_reentrant=False)
        outputs.append(ys)
    return torch.cat(outputs), state
