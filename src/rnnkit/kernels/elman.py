r"""Backpropagation through time for the Elman RNN, derived by hand.

Forward (one sequence, column vectors; x̃_t = W_ih x_t + b_ih arrives precomputed as ``xg``)::

    a_t = x̃_t + W_hh h_{t-1} + b_hh          pre-activation             (H,)
    h_t = f(a_t)                              state and output           (H,)

for t = 1..T from the initial state h_0. The loss L depends on every output h_t and on the
final state h_T.

Backward. Write δh_t for the gradient reaching h_t *from the future* (the later steps, and the
final state), and ∂L_t/∂h_t for the gradient from the output at step t itself. Since
∂h_t/∂h_{t-1} = diag(f'(a_t)) W_hh, the chain rule gives, from t = T down to 1::

    δh_T     = ∂L/∂h_T                        the final state's gradient
    δa_t     = f'(a_t) ⊙ (∂L_t/∂h_t + δh_t)   through the nonlinearity (a diagonal Jacobian)
    δh_{t-1} = W_hhᵀ δa_t                     through the recurrent weights

i.e. δh_{t-1} = (∂h_t/∂h_{t-1})ᵀ (∂L_t/∂h_t + δh_t). Every parameter gradient then reads off
the δa_t::

    ∂L/∂x̃_t  = δa_t                          (x̃_t enters a_t with Jacobian I)
    ∂L/∂h_0  = δh_0
    ∂L/∂W_hh = Σ_t δa_t h_{t-1}ᵀ              one (H, T·B) @ (T·B, H) product
    ∂L/∂b_hh = Σ_t δa_t

The derivative f' is read off the saved outputs h_t = f(a_t), so a_t is never stored:
tanh' = 1 − h², sigmoid' = h (1 − h), relu' = [a > 0] = [h > 0], identity' = 1.

Masks (variable lengths): with m_t ∈ {0, 1} per sequence, the state is carried through padding
and the output there is zero::

    h_t = m_t f(a_t) + (1 − m_t) h_{t-1},    y_t = m_t h_t

so the backward gains a mask on δa_t and a carry path for δh::

    δa_t     = m_t f'(a_t) ⊙ (∂L_t/∂y_t + δh_t)
    δh_{t-1} = W_hhᵀ δa_t + (1 − m_t) δh_t

In code the batch is stored in rows, (B, H), so W_hh h becomes ``h @ W_hh.T`` and W_hhᵀ δa
becomes ``δa @ W_hh``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

from rnnkit.cells.elman import ElmanCell
from rnnkit.kernels.dispatch import (
    origin,
    save_with_origin,
    second_order,
    torch_op_may_run,
    torch_op_sequence,
)
from rnnkit.kernels.fused import step_ops
from rnnkit.kernels.onednn import StepProduct
from rnnkit.kernels.registry import register_kernel

INPLACE_ACTIVATIONS: dict[str, Callable[[Tensor], object]] = {
    "tanh": Tensor.tanh_,
    "relu": Tensor.relu_,
    "sigmoid": Tensor.sigmoid_,
    "identity": lambda a: a,
}
"""f applied in place to a buffer that holds a = the pre-activation; afterwards it holds f(a)."""


def derivative_from_output(nonlinearity: str, out: Tensor) -> Tensor | None:
    """f'(a) computed from out = f(a), element-wise; None for the identity (f' = 1)."""
    if nonlinearity == "tanh":
        return 1 - out * out  # tanh' = 1 − tanh²
    if nonlinearity == "sigmoid":
        return out * (1 - out)  # σ' = σ (1 − σ)
    if nonlinearity == "relu":
        return (out > 0).to(out.dtype)  # relu' = [a > 0], and relu(a) > 0 exactly when a > 0
    if nonlinearity == "identity":
        return None
    raise ValueError(f"no derivative for nonlinearity {nonlinearity!r}")


class ElmanBPTT(torch.autograd.Function):
    """Elman forward over all T steps without a graph; backward by hand-derived BPTT."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        xg: Tensor,  # (T, B, H) x̃_t = W_ih x_t + b_ih
        h0: Tensor,  # (B, H)
        weight_hh: Tensor,  # (H, H)
        bias_hh: Tensor | None,  # (H,)
        mask: Tensor | None,  # (T, B, 1) bool
        nonlinearity: str,
        *origin_args,  # for second derivatives: see rnnkit.kernels.dispatch
    ) -> tuple[Tensor, Tensor]:
        T = xg.shape[0]
        f_ = INPLACE_ACTIVATIONS[nonlinearity]
        # The recurrent bias joins the input term once, for all T steps: xb_t = x̃_t + b_hh.
        xb = xg if bias_hh is None else xg + bias_hh  # (T, B, H)
        product = StepProduct(weight_hh, xg.shape[1])  # h ↦ W_hh h
        hs = xg.new_empty(xg.shape)  # (T, B, H): hs[t] = h_t, the state after step t
        h = h0  # (B, H)
        fused = step_ops(xg)  # the compiled step, or None (rnnkit.kernels.fused)
        for t in range(T):
            product.into(h, hs[t], add=xb[t])  # a_t = x̃_t + b_hh + W_hh h_{t-1}
            if fused is not None:  # the element-wise work below, in one compiled call
                fused.elman_forward(hs[t], h, nonlinearity, None if mask is None else mask[t])
                h = hs[t]
                continue
            f_(hs[t])  # h_t = f(a_t), in place
            if mask is not None:  # past a sequence's end, carry its state: h_t = h_{t-1}
                torch.where(mask[t], hs[t], h, out=hs[t])
            h = hs[t]
        # Outputs: the states themselves, zeroed past each sequence's end.
        ys = hs if mask is None else torch.where(mask, hs, 0.0)  # (T, B, H)
        ctx.nonlinearity = nonlinearity
        # Backward needs h_t (for f'(a_t), and as h_{t-1} of step t+1), h_0 and W_hh.
        save_with_origin(ctx, origin_args, h0, weight_hh, hs, mask)
        return ys, hs[-1].clone()  # final state h_T (B, H), its own tensor

    @staticmethod
    def backward(ctx: FunctionCtx, grad_ys: Tensor, grad_hT: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            return second_order(ctx, 6, ctx.saved_tensors[4:], (grad_ys, grad_hT))
        h0, weight_hh, hs, mask = ctx.saved_tensors[:4]
        need_xg, need_h0, need_w, need_b = ctx.needs_input_grad[:4]
        T = hs.shape[0]

        # f'(a_t) for all steps at once, times m_t: no gradient enters a_t past a sequence's end.
        fprime = derivative_from_output(ctx.nonlinearity, hs)  # (T, B, H), or None if f' = 1
        if mask is not None:
            fprime = mask.to(hs.dtype) if fprime is None else fprime * mask

        delta_a = torch.empty_like(hs)  # (T, B, H): δa_t = ∂L/∂a_t
        delta_h = grad_hT.clone(memory_format=torch.contiguous_format)  # (B, H): δh_T
        fused = step_ops(hs)  # the compiled step, or None (rnnkit.kernels.fused)
        back = StepProduct(weight_hh.t().contiguous(), hs.shape[1])  # δa ↦ δa W_hh
        for t in range(T - 1, -1, -1):
            if fused is not None:  # the element-wise work below, in one compiled call
                fp_t = None if fprime is None else fprime[t]
                fused.elman_backward(grad_ys[t], delta_h, fp_t, delta_a[t])
            else:
                # The total gradient at h_t: from its own output plus from the future.
                torch.add(grad_ys[t], delta_h, out=delta_a[t])  # ∂L_t/∂h_t + δh_t
                # Through the nonlinearity: δa_t = f'(a_t) ⊙ (∂L_t/∂h_t + δh_t).
                if fprime is not None:
                    delta_a[t].mul_(fprime[t])
            # Through the recurrent weights: δh_{t-1} = W_hhᵀ δa_t.
            if mask is None:
                back.into(delta_a[t], delta_h)
            else:  # ... or, past a sequence's end, carried back unchanged: δh_{t-1} = δh_t
                torch.where(mask[t], delta_a[t] @ weight_hh, delta_h, out=delta_h)

        grad_xg = delta_a if need_xg else None  # ∂L/∂x̃_t = δa_t
        grad_h0 = delta_h if need_h0 else None  # ∂L/∂h_0 = δh_0
        grad_w = grad_b = None
        if need_w:
            # ∂L/∂W_hh = Σ_t δa_t h_{t-1}ᵀ: one product over all T·B rows.
            H = hs.shape[-1]
            h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])  # (T, B, H): h_{t-1}
            grad_w = delta_a.reshape(-1, H).t() @ h_prev.reshape(-1, H)  # (H, H)
        if need_b:
            grad_b = delta_a.sum(dim=(0, 1))  # ∂L/∂b_hh = Σ_t δa_t   (H,)
        return grad_xg, grad_h0, grad_w, grad_b, None, None, *ctx.no_origin_grads


def elman_sequence(
    cell: ElmanCell, xg: Tensor, state: Tensor, mask: Tensor | None, xs: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Run ``cell`` over a whole sequence: returns ys (T, B, H) and the final state (B, H).

    ``xg`` (T, B, H) is W_ih x + b_ih for every step; ``state`` (B, H) is h_0; ``mask``
    (T, B, 1) bool or None. Same results as ``Recurrent(cell, use_kernel=False)``. ``xs``, the
    sequence xg was projected from, makes second derivatives available (``kernels.dispatch``).
    """
    tail = () if xs is None else origin(cell, xs, state, mask)
    return ElmanBPTT.apply(xg, state, cell.weight_hh, cell.bias_hh, mask, cell.nonlinearity, *tail)


def use_torch_op(cell: ElmanCell, xs: Tensor, state: Tensor, mask: Tensor | None) -> bool:
    """Whether the Elman kernel runs torch's own RNN op (``torch._VF.rnn_tanh`` / ``rnn_relu``)
    for ``cell`` over ``xs``: inference (no gradient recorded), a tanh or ReLU cell, no mask,
    T ≥ 1, and the "elman" switch of ``rnnkit.kernels.backends`` at "auto". That op computes
    the same function in one C++ loop, where the hand kernel's forward steps in Python, which
    shows at small steps (docs/speed.md#issue-17s-targets-on-an-intel-xeon). Training keeps the
    hand-derived kernel."""
    return cell.nonlinearity in ("tanh", "relu") and torch_op_may_run(
        "elman", cell, xs, state, mask
    )


def elman_sequence_torch(cell: ElmanCell, xs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """``cell`` over xs (T, B, I) from ``state`` (B, H) through torch's op (``use_torch_op``):
    ys (T, B, H) and h_T (B, H), the same function as ``elman_sequence`` without a mask."""
    op = torch._VF.rnn_tanh if cell.nonlinearity == "tanh" else torch._VF.rnn_relu
    return torch_op_sequence(op, cell, xs, state)


@register_kernel(ElmanCell)
def run_elman(
    cell: ElmanCell, xs: Tensor, state: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``cell`` over xs (T, B, I) from ``state`` (B, H): the kernel of ``ElmanCell`` (in
    inference, torch's op where ``use_torch_op`` says so: the same function)."""
    if use_torch_op(cell, xs, state, mask):
        return elman_sequence_torch(cell, xs, state)
    xg = F.linear(xs, cell.weight_ih, cell.bias_ih)  # (T, B, H): all steps in one product
    return elman_sequence(cell, xg, state, mask, xs)
