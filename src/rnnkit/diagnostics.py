"""Gradient flow through time: vanishing and exploding gradients, made measurable.

Bengio, Simard & Frasconi, "Learning long-term dependencies with gradient descent is difficult",
1994; Pascanu, Mikolov & Bengio, "On the difficulty of training recurrent neural networks", 2013.

By the chain rule ∂h_T/∂h_0 = ∏_{t=T}^{1} ∂h_t/∂h_{t-1}: a product of T Jacobians whose norm
shrinks or grows geometrically. For the scalar linear RNN h_t = w h_{t-1} + x_t it is w^T:
over 50 steps 1.1^50 = 117.4 and 0.9^50 = 0.00515.

These functions step the cell themselves (like a decoder does) because they need a handle on
every intermediate state; they run the generic autograd path.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State


def _flat(state: State) -> Tensor:
    """A state as one (B, S) tensor: tuples (the LSTM's (h, c)) are concatenated."""
    return torch.cat(state, dim=-1) if isinstance(state, tuple) else state


def _unflat(flat: Tensor, like: State) -> State:
    if not isinstance(like, tuple):
        return flat
    return tuple(flat.split([s.shape[-1] for s in like], dim=-1))


def gradient_norms(
    cell: nn.Module,
    xs: Tensor,
    loss_fn: Callable[[Tensor], Tensor],
    state: State | None = None,
) -> Tensor:
    """||∂L/∂h_t|| for t = 1..T: how much of the loss's gradient reaches each step's state.

    Args:
        cell: any cell (``forward(x, state) -> (y, state)``).
        xs: inputs (T, B, I).
        loss_fn: maps the outputs ys (T, B, O) to a scalar loss.
        state: the initial state; zeros if None.

    Returns a (T,) tensor; entry t-1 is the Frobenius norm over the batch of ∂L/∂h_t, the total
    derivative through all later steps (for tuple states, the first tensor, the LSTM's h).
    """
    if xs.dim() != 3:
        raise ValueError(f"xs must be (T, B, I), got shape {tuple(xs.shape)}")
    state = (
        cell.init_state(xs.shape[1], device=xs.device, dtype=xs.dtype) if state is None else state
    )
    hs, ys = [], []
    with torch.enable_grad():
        for x in xs.unbind(0):
            y, state = cell(x, state)
            h = state[0] if isinstance(state, tuple) else state
            hs.append(h)
            ys.append(y)
        loss = loss_fn(torch.stack(ys))
        grads = torch.autograd.grad(loss, hs, allow_unused=True)
    return torch.stack(
        [torch.zeros((), dtype=xs.dtype) if g is None else g.norm().detach().cpu() for g in grads]
    )


def step_jacobians(cell: nn.Module, xs: Tensor, state: State | None = None) -> list[Tensor]:
    """The per-step Jacobians ∂h_t/∂h_{t-1}, t = 1..T, each (B, S, S) (S: the state width;
    tuple states are concatenated, so the LSTM's is the (2H, 2H) Jacobian of (h, c))."""
    state = (
        cell.init_state(xs.shape[1], device=xs.device, dtype=xs.dtype) if state is None else state
    )
    jacobians = []
    for x in xs.unbind(0):

        def step(s_flat: Tensor, x: Tensor = x, like: State = state) -> Tensor:
            _, new = cell(x.unsqueeze(0), _unflat(s_flat.unsqueeze(0), like))
            return _flat(new).squeeze(0)

        flat = _flat(state).detach()
        jacobians.append(torch.func.vmap(torch.func.jacrev(step))(flat, x))
        with torch.no_grad():
            _, state = cell(x, state)
    return jacobians


def jacobian_product(cell: nn.Module, xs: Tensor, state: State | None = None) -> Tensor:
    """∂h_T/∂h_0 = ∂h_T/∂h_{T-1} ··· ∂h_1/∂h_0, the product of the T step Jacobians, (B, S, S)."""
    product = None
    for J in step_jacobians(cell, xs, state):
        product = J if product is None else J @ product
    return product
