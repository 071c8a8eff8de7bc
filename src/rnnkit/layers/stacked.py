"""Stacked (deep) recurrent layers, with dropout between them and optional residual connections."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rnnkit.cells.base import State
from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels import find_kernel
from rnnkit.kernels.chunks import has_chunk_kernel
from rnnkit.kernels.lstm import use_fused
from rnnkit.kernels.recompute import dropped, keep_mask, recompute_stack
from rnnkit.layers.packed import applies as packed_applies
from rnnkit.layers.packed import packed_stack
from rnnkit.layers.recurrent import Recurrent, check_lengths, check_state, length_mask


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
            training, the sequence runs through all layers in chunks of k steps, and backward
            keeps only the stack's input and each layer's state at every k-th step and
            recomputes one chunk of all layers at a time: memory O(T·input + L·T/k·state +
            k·L·activations) instead of O(T·L·activations) (k ≈ √T is about the least), for
            one more forward pass. When every layer is a ``Recurrent`` whose cell has a kernel,
            the recomputation runs inside the kernels, the kernels' own backward over each
            chunk (``rnnkit.kernels.recompute``); otherwise each chunk runs under
            ``torch.utils.checkpoint`` (non-reentrant, RNG state preserved). The dropout masks
            between ``Recurrent`` layers are drawn before the layers run, as wide as the whole
            sequence, from the random numbers storing everything draws for them when the cells
            draw none: the same values, masks and gradients as k = 0 (tested). Unidirectional
            layers only: a reverse direction needs the whole sequence.

    ``recompute_in_kernels`` (True) set to False on a stack runs its chunks under
    ``torch.utils.checkpoint`` even where the kernels could recompute them, for comparisons.

    ``forward(xs, states=None, *, lengths=None) -> (ys, states)``: ``states`` is a list with one
    state per layer (or None for zeros); the returned list holds each layer's final state.
    """

    recompute_in_kernels = True

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
        k = self.checkpoint_steps
        if k and len(xs) > k and torch.is_grad_enabled():
            return self._checkpointed(xs, list(states), lengths, k)
        return self._layers(xs, states, lengths)

    def _keeps(self, xs: Tensor) -> list[Tensor | None] | None:
        """Dropout's keep masks after each layer (None after the top one or without dropout),
        drawn as ``F.dropout`` would in ``_layers``; None when a layer's width is unknown."""
        T, B = xs.shape[:2]
        if not (self.dropout and self.training):
            return [None] * len(self.layers)
        cells = [getattr(layer, "cell", None) for layer in self.layers]
        widths = [getattr(cell, "output_size", None) for cell in cells]
        if None in widths[:-1]:
            return None
        return [keep_mask((T, B, w), self.dropout, xs) for w in widths[:-1]] + [None]

    def _checkpointed(
        self, xs: Tensor, states: list, lengths: Tensor | None, k: int
    ) -> tuple[Tensor, list[State]]:
        """Chunks of k steps through all layers, each recomputed in backward (checkpointing)."""
        if xs.dim() != 3:
            raise ValueError(f"input must be (T, B, features), got shape {tuple(xs.shape)}")
        T, B = xs.shape[:2]
        lengths = check_lengths(lengths, T, B, xs.device)
        keeps = self._keeps(xs)
        kernels = self.recompute_in_kernels and all(in_kernel(layer) for layer in self.layers)
        if keeps is not None and kernels:
            for l, (layer, state) in enumerate(zip(self.layers, states, strict=True)):
                if state is None:
                    states[l] = layer.cell.init_state(B, device=xs.device, dtype=xs.dtype)
                else:
                    check_state(layer.cell, state, B)
            mask = None if lengths is None else length_mask(lengths, T)
            cells = [layer.cell for layer in self.layers]
            return recompute_stack(cells, xs, states, mask, k, self.residual, self.dropout, keeps)
        outputs = []
        # split, not xs[a:b] in a loop: one op whose backward concatenates the chunk gradients
        for i, chunk in enumerate(xs.split(k)):
            part = None if lengths is None else (lengths - i * k).clamp(0, len(chunk))
            pieces = None if keeps is None else [m if m is None else m[i * k :][:k] for m in keeps]
            ys, states = checkpoint(self._layers, chunk, states, part, pieces, use_reentrant=False)
            outputs.append(ys)
        return torch.cat(outputs), states

    def _layers(
        self,
        xs: Tensor,
        states: Sequence[State | None],
        lengths: Tensor | None,
        keeps: list[Tensor | None] | None = None,
    ) -> tuple[Tensor, list[State]]:
        """All layers over xs; dropout from the keep masks ``keeps`` if given."""
        if lengths is None and keeps is None and self._one_fused_call(xs):
            return fused_lstm_stack([layer.cell for layer in self.layers], xs, states)
        if keeps is None and lengths is not None:
            lengths = check_lengths(lengths, len(xs), xs.shape[1], xs.device)
            if packed_applies(self, xs, lengths):  # inference: torch's one packed call
                return packed_stack(self, xs, states, lengths)
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
            if keeps is not None and keeps[l] is not None:
                ys = dropped(ys, keeps[l], self.dropout)
            elif keeps is None and self.dropout and l < len(self.layers) - 1:
                ys = F.dropout(ys, self.dropout, self.training)
            xs = ys
            finals.append(state)
        return xs, finals

    def _one_fused_call(self, xs: Tensor) -> bool:
        """Whether the whole stack is one call of torch's fused LSTM op, as torch.nn.LSTM
        makes it: plain LSTM layers that each would take the fused op (``use_fused``), no
        residual connections, no dropout in training, no hooks on the layers (they would not
        run), and one hidden size for every layer, each reading the one below (the op's
        shapes)."""
        cells = [getattr(layer, "cell", None) for layer in self.layers]
        return (
            not self.residual
            and (self.dropout == 0 or not self.training)
            and all(type(layer) is Recurrent and layer.use_kernel for layer in self.layers)
            and not any(layer._forward_hooks or layer._forward_pre_hooks for layer in self.layers)
            and all(type(cell) is LSTMCell for cell in cells)
            and len({cell.bias_ih is None for cell in cells}) == 1
            and len({cell.hidden_size for cell in cells}) == 1
            and all(cell.input_size == cells[0].hidden_size for cell in cells[1:])
            and use_fused(cells[0], xs, None)
        )


def fused_lstm_stack(
    cells: list[LSTMCell], xs: Tensor, states: Sequence[State | None]
) -> tuple[Tensor, list[State]]:
    """Plain LSTM layers over xs (T, B, I) in one call of torch's fused op with every layer's
    parameters (``torch.nn.LSTM``'s call), instead of one call a layer: the same function as
    the layers in turn (``lstm_sequence_fused`` each), torch's autograd for the gradients."""
    L, B, H = len(cells), xs.shape[1], cells[0].hidden_size
    params = []
    for cell in cells:
        params += [cell.weight_ih, cell.weight_hh]
        if cell.bias_ih is not None:
            params += [cell.bias_ih, cell.bias_hh]
    if all(state is None for state in states):  # zeros for every layer: two allocations
        hx = (xs.new_zeros(L, B, H), xs.new_zeros(L, B, H))
    else:
        h0, c0 = [], []
        for cell, state in zip(cells, states, strict=True):
            if state is None:
                state = cell.init_state(B, device=xs.device, dtype=xs.dtype)
            else:
                check_state(cell, state, B)
            h0.append(state[0])
            c0.append(state[1])
        hx = (torch.stack(h0), torch.stack(c0))
    bias, train = cells[0].bias_ih is not None, torch.is_grad_enabled()
    ys, h, c = torch._VF.lstm(xs, hx, params, bias, len(cells), 0.0, train, False, False)
    return ys, [(h[l], c[l]) for l in range(len(cells))]


def in_kernel(layer: nn.Module) -> bool:
    """Whether ``layer`` checkpoints inside its kernel: a ``Recurrent`` running a cell that has
    a chunk kernel (``rnnkit.kernels.chunks``)."""
    return (
        isinstance(layer, Recurrent)
        and layer.use_kernel
        and has_chunk_kernel(layer.cell)
        and find_kernel(layer.cell) is not None
    )
