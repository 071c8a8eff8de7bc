"""The BPTT engine: for each built-in cell, the forward pass over a whole sequence and the
backward pass through time derived by hand, as ``torch.autograd.Function``s.

Common shape of every kernel (see each module's derivation):
- the input projection W_ih x + b_ih for all T steps arrives precomputed (one matrix product
  under autograd, in the kernel's runner), as ``xg`` (T, B, G·H);
- forward, per step, one recurrent product and the element-wise gate work, no autograd graph;
- backward, the recursion δh_{t-1} = (∂h_t/∂h_{t-1})ᵀ (∂L_t/∂h_t + δh_t), run from T down to 1;
  the recurrent weight gradient as one matrix product over all T·B rows;
- a mask (T, B, 1) for variable lengths: past a sequence's end the state is carried unchanged
  and the output is zero, exactly as the generic path (``generic``).

Each kernel registers for the exact cell class it was derived for (``register_kernel``), with a
runner ``run(cell, xs, state, mask) -> (ys, final_state)`` that projects the inputs and applies
its Function; ``run_sequence(cell, ...)`` runs a cell through its kernel, or through the generic
loop of cell calls if its exact type has none (a user's cell, also a subclass of a built-in one).
The fused paths' switches: ``rnnkit.kernels.backends``.
"""

from __future__ import annotations

from torch import Tensor, nn

from rnnkit.cells.base import State
from rnnkit.kernels import elman, gru, jordan, lstm, minimal_gru  # noqa: F401  (each registers)
from rnnkit.kernels.backends import get_backend, set_backend
from rnnkit.kernels.elman import ElmanBPTT
from rnnkit.kernels.generic import generic
from rnnkit.kernels.gru import GRUBPTT
from rnnkit.kernels.jordan import JordanBPTT
from rnnkit.kernels.lstm import LSTMBPTT
from rnnkit.kernels.minimal_gru import MinimalGRUBPTT
from rnnkit.kernels.registry import KERNELS, find_kernel, has_kernel, register_kernel


def run_sequence(
    cell: nn.Module, xs: Tensor, state: State, mask: Tensor | None
) -> tuple[Tensor, State]:
    """``cell`` over xs (T, B, I) from ``state``: through its kernel, else the generic path."""
    run = find_kernel(cell) or generic
    return run(cell, xs, state, mask)


__all__ = [
    "KERNELS",
    "ElmanBPTT",
    "GRUBPTT",
    "JordanBPTT",
    "LSTMBPTT",
    "MinimalGRUBPTT",
    "find_kernel",
    "generic",
    "get_backend",
    "has_kernel",
    "register_kernel",
    "run_sequence",
    "set_backend",
]
