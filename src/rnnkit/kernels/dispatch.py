r"""How a kernel's backward stays differentiable. (Which cells run through a kernel:
``rnnkit.kernels.registry``; ``KERNEL_CELLS`` and ``kernel_for`` here are its former names.)

**Second derivatives.** A kernel's backward is a hand-written recursion over saved activations,
computed without a graph: exact for first derivatives, but not itself differentiable. A gradient
penalty (``torch.autograd.grad(L, x, create_graph=True)``, then backward of a function of that
gradient), Hessian-vector products and ``gradgradcheck`` differentiate the backward. So each
kernel Function also receives, after its own inputs, the *origin* of its inputs: an ``Origin``
(the cell, the mask, the parameter names) and the tensors the sequence was computed from, the
input sequence xs, the initial state and every parameter of the cell. In its backward,

- with grad mode off (an ordinary ``loss.backward()``), the hand-derived recursion gives the
  gradients of the kernel's own inputs (xg = W_ih x + b_ih, h_0, W_hh, ...), and the origin's
  get none;
- with grad mode on (``create_graph=True``), ``second_order`` recomputes the sequence through
  the generic path from the origin's tensors, a graph of differentiable ops, and differentiates
  it with ``create_graph=True``: the origin's tensors get the whole gradient (the kernel's own
  inputs get none), as a differentiable function of the inputs and of the incoming gradients,
  so derivatives of every order are right.

Either way each tensor receives its whole gradient exactly once: the kernel's inputs are
functions of the origin's tensors (xg of xs and W_ih; h_0 and W_hh are themselves among them).
The origin's tensors are saved by reference (they are alive anyway), so the first-order path
costs no memory and no time beyond passing them.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from rnnkit.cells.base import State
from rnnkit.kernels.backends import get_backend
from rnnkit.kernels.generic import generic
from rnnkit.kernels.registry import KERNELS, has_kernel

KERNEL_CELLS = KERNELS.keys()
"""The cell classes that have a hand-derived kernel (a live view of the registry's table)."""

kernel_for = has_kernel
"""Whether ``cell`` runs through a kernel (former name of ``registry.has_kernel``)."""


def flatten_state(state: State) -> list[Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


class Origin:
    """What a kernel's inputs were computed from, less the tensors (passed to ``apply`` after
    it, see ``origin``): the cell, the mask, the cell's parameter names, the state's arity."""

    def __init__(self, cell: nn.Module, names: tuple[str, ...], n_state: int, mask) -> None:
        self.cell, self.names, self.n_state, self.mask = cell, names, n_state, mask

    def recompute(self, tensors: tuple[Tensor, ...]) -> list[Tensor]:
        """The sequence through the generic path from (xs, *state, *parameters): returns
        [ys, *final state], a graph of differentiable ops."""
        n = self.n_state
        xs, state, params = tensors[0], tensors[1 : 1 + n], tensors[1 + n :]
        state = tuple(state) if n > 1 else state[0]
        tensors = {f"cell.{k}": p for k, p in zip(self.names, params, strict=True)}
        ys, final = functional_call(_Generic(self.cell), tensors, (xs, state, self.mask))
        return [ys, *flatten_state(final)]


class _Generic(nn.Module):
    """The generic path as a module's forward, for ``torch.func.functional_call``."""

    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, xs: Tensor, state: State, mask: Tensor | None):
        return generic(self.cell, xs, state, mask)


def records_grad(cell: nn.Module, *tensors: Tensor) -> bool:
    """Whether autograd records a graph through ``cell``'s parameters or ``tensors``: grad mode
    on and one of them requiring a gradient. Where it does not (inference), a kernel may run an
    op of torch's that computes the same function with no backward of rnnkit's."""
    if not torch.is_grad_enabled():
        return False
    return any(t.requires_grad for t in (*tensors, *cell.parameters()))


def torch_op_may_run(
    switch: str, cell: nn.Module, xs: Tensor, state: Tensor, mask: Tensor | None
) -> bool:
    """What every kernel that may hand a sequence to torch's own RNN op in inference requires
    (``rnnkit.kernels.elman`` and ``gru``'s ``use_torch_op`` add their cells' own conditions):
    its ``switch`` of ``rnnkit.kernels.backends`` at "auto", no mask, T ≥ 1, and no gradient
    recorded (``records_grad``)."""
    if get_backend(switch) != "auto" or mask is not None or xs.shape[0] == 0:
        return False
    return not records_grad(cell, xs, state)


def torch_op_sequence(op, cell: nn.Module, xs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """One layer of ``cell`` over xs (T, B, I) from ``state`` (B, H) through torch's RNN op
    ``op`` (``torch._VF.rnn_tanh``, ``rnn_relu`` or ``gru``), the cell's parameters in torch's
    order: ys (T, B, H) and h_T (B, H)."""
    params = [cell.weight_ih, cell.weight_hh]
    if cell.bias_ih is not None:
        params += [cell.bias_ih, cell.bias_hh]
    ys, h = op(xs, state.unsqueeze(0), params, len(params) == 4, 1, 0.0, False, False, False)
    return ys, h[0]


def origin(cell: nn.Module, xs: Tensor, state: State, mask: Tensor | None) -> tuple:
    """``(Origin, xs, *state, *parameters)``: the trailing inputs of a kernel Function's apply."""
    named = list(cell.named_parameters())
    leaves = flatten_state(state)
    names = tuple(n for n, _ in named)
    return (Origin(cell, names, len(leaves), mask), xs, *leaves, *(p for _, p in named))


def second_order(ctx: Any, n_inputs: int, tensors, grad_outputs) -> tuple:
    """The backward of a kernel Function under ``create_graph``: gradients for all its inputs,
    None for its own ``n_inputs`` and the ``Origin``, the whole gradient for the origin's
    ``tensors`` (the ones that need it), differentiable (see the module docstring)."""
    origin = ctx.origin
    if origin is None:
        raise RuntimeError(
            "second derivatives through an rnnkit kernel need the sequence's origin: run it "
            "through rnnkit.Recurrent (or a layer built on it), not the kernel function directly"
        )
    needs = ctx.needs_input_grad[n_inputs + 1 :]
    outputs = origin.recompute(tensors)
    return (None,) * (n_inputs + 1) + graph_grads(tensors, needs, outputs, grad_outputs)


def graph_grads(inputs: tuple, needs: tuple, outputs: tuple, grad_outputs: tuple) -> tuple:
    """The gradients of ``inputs`` (where ``needs`` says so; None elsewhere) through ``outputs``
    recomputed under autograd, against ``grad_outputs``, with ``create_graph=True`` so that
    they can be differentiated again."""
    wanted = [t for t, need in zip(inputs, needs, strict=True) if need]
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs, strict=True) if o.requires_grad]
    grads = iter(
        torch.autograd.grad(
            [o for o, _ in pairs],
            wanted,
            [g for _, g in pairs],
            create_graph=True,
            allow_unused=True,
        )
        if wanted and pairs
        else [None] * len(wanted)
    )
    return tuple(next(grads) if need else None for need in needs)


def save_with_origin(ctx: Any, origin_args: tuple, *tensors: Tensor | None) -> None:
    """``ctx.save_for_backward(*tensors, *origin tensors)`` and ``ctx.origin``; the kernel's
    backward reads its own tensors as ``ctx.saved_tensors[:len(tensors)]``."""
    ctx.origin = origin_args[0] if origin_args else None
    ctx.no_origin_grads = (None,) * len(origin_args)  # the first-order backward's tail
    ctx.save_for_backward(*tensors, *origin_args[1:])
