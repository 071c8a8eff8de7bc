"""The generic path: any cell stepped T times under autograd.

It is the path of every cell without a kernel (a user's cell, or a subclass of a built-in one),
the reference each kernel is tested equal to, and the recomputation that gives a kernel its
second derivatives (``rnnkit.kernels.dispatch``). ``rnnkit.Recurrent`` runs it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State, map_state


def generic(cell: nn.Module, xs: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
    """The generic path: ``cell`` stepped T times under autograd; mask (T, B, 1) or None."""
    ys = []
    # Iterate over views from unbind, never xs[t]: under autograd, indexing makes backward
    # O(T^2) (each step's backward zero-fills a whole-sequence gradient).
    masks = [None] * len(xs) if mask is None else mask.unbind(0)
    for x, m in zip(xs.unbind(0), masks, strict=True):
        y, new = cell(x, state)
        if m is not None:  # past a sequence's end: keep its state, output zero
            new = map_state(lambda n, o, m=m: torch.where(m, n, o), new, state)
            y = torch.where(m, y, torch.zeros_like(y))
        ys.append(y)
        state = new
    if not ys:
        return xs.new_zeros(0, xs.shape[1], cell.output_size), state
    return torch.stack(ys), state  # (T, B, O)
