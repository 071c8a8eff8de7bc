r"""Backpropagation through time for the Jordan RNN, derived by hand.

The state is the previous *output*, so the recursion runs through y rather than h.

Forward (one sequence, column vectors; x̃_t = W_ih x_t + b_ih arrives precomputed as ``xg``)::

    a_t = x̃_t + W_yh y_{t-1} + b_yh          hidden pre-activation      (H,)
    h_t = f(a_t)                              hidden layer               (H,)
    z_t = W_hy h_t + b_hy                     output pre-activation      (O,)
    y_t = g(z_t)                              output and next state      (O,)

for t = 1..T from the initial state y_0. The loss L depends on every output y_t and on the
final state y_T.

Backward. Write δy_t for the gradient reaching y_t *from the future* (through a_{t+1}, and the
final state), and ∂L_t/∂y_t for the gradient from the output at step t itself. One step back
walks the forward equations in reverse, from t = T down to 1::

    δy_T     = ∂L/∂y_T                           the final state's gradient
    δz_t     = g'(z_t)ᵀ (∂L_t/∂y_t + δy_t)       through the output nonlinearity
    δh_t     = W_hyᵀ δz_t                        through the output weights
    δa_t     = f'(a_t) ⊙ δh_t                    through the hidden nonlinearity
    δy_{t-1} = W_yhᵀ δa_t                        through the recurrent (output → hidden) weights

i.e. δy_{t-1} = W_yhᵀ (f'(a_t) ⊙ W_hyᵀ (g'(z_t)ᵀ (∂L_t/∂y_t + δy_t))). The Jacobian g'(z_t) is
diagonal for the element-wise g (identity' = 1, tanh' = 1 − y², sigmoid' = y (1 − y)); for
softmax it is diag(y) − y yᵀ, symmetric, and its product with a vector e is

    g'(z)ᵀ e = y ⊙ (e − Σ_k e_k y_k).

Parameter gradients read off δa_t and δz_t::

    ∂L/∂x̃_t  = δa_t                          ∂L/∂y_0  = δy_0
    ∂L/∂W_yh = Σ_t δa_t y_{t-1}ᵀ              ∂L/∂b_yh = Σ_t δa_t
    ∂L/∂W_hy = Σ_t δz_t h_tᵀ                  ∂L/∂b_hy = Σ_t δz_t

each weight gradient one product over all T·B rows. f' is read off the saved h_t = f(a_t)
(tanh' = 1 − h², sigmoid' = h (1 − h), relu' = [h > 0], identity' = 1) and g' off the saved y_t,
so neither pre-activation is stored.

Masks (variable lengths): with m_t ∈ {0, 1} per sequence, the state is carried through padding
and the output there is zero::

    state_t = m_t g(z_t) + (1 − m_t) state_{t-1},    output_t = m_t state_t

so δz_t gains a factor m_t (and with it δh_t and δa_t), and δy gains a carry path::

    δy_{t-1} = W_yhᵀ δa_t + (1 − m_t) δy_t

In code the batch is stored in rows, (B, ·), so W x becomes ``x @ W.T`` and Wᵀ δ becomes
``δ @ W``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import FunctionCtx

from rnnkit.cells.jordan import JordanCell
from rnnkit.kernels.dispatch import origin, save_with_origin, second_order
from rnnkit.kernels.elman import INPLACE_ACTIVATIONS, derivative_from_output
from rnnkit.kernels.fused import step_ops
from rnnkit.kernels.registry import register_kernel


def _softmax_(z: Tensor) -> None:
    """Softmax over the last dimension, in place: exp(z − max z) / Σ exp(z − max z)."""
    z.sub_(z.amax(dim=-1, keepdim=True)).exp_()  # shifting by the max keeps exp from overflowing
    z.div_(z.sum(dim=-1, keepdim=True))


INPLACE_OUTPUT_ACTIVATIONS = {**INPLACE_ACTIVATIONS, "softmax": _softmax_}


class JordanBPTT(torch.autograd.Function):
    """Jordan forward over all T steps without a graph; backward by hand-derived BPTT."""

    @staticmethod
    def forward(
        ctx: FunctionCtx,
        xg: Tensor,  # (T, B, H) x̃_t = W_ih x_t + b_ih
        y0: Tensor,  # (B, O)
        weight_yh: Tensor,  # (H, O)
        bias_yh: Tensor | None,  # (H,)
        weight_hy: Tensor,  # (O, H)
        bias_hy: Tensor | None,  # (O,)
        mask: Tensor | None,  # (T, B, 1) bool
        nonlinearity: str,
        output_nonlinearity: str,
        *origin_args,  # for second derivatives: see rnnkit.kernels.dispatch
    ) -> tuple[Tensor, Tensor]:
        T, B, _ = xg.shape
        O = weight_hy.shape[0]
        f_ = INPLACE_ACTIVATIONS[nonlinearity]
        g_ = INPLACE_OUTPUT_ACTIVATIONS[output_nonlinearity]
        # The recurrent bias joins the input term once, for all T steps: xb_t = x̃_t + b_yh.
        xb = xg if bias_yh is None else xg + bias_yh  # (T, B, H)
        w_yh_t, w_hy_t = weight_yh.t(), weight_hy.t()  # (O, H), (H, O)
        hs = xg.new_empty(xg.shape)  # (T, B, H): hs[t] = h_t
        ys = xg.new_empty(T, B, O)  # (T, B, O): ys[t] = y_t, the state after step t
        y = y0  # (B, O)
        # the compiled step (rnnkit.kernels.fused) for the element-wise g, its mask, and f
        fused = None if output_nonlinearity == "softmax" else step_ops(xg)
        for t in range(T):
            torch.addmm(xb[t], y, w_yh_t, out=hs[t])  # a_t = x̃_t + b_yh + W_yh y_{t-1}
            f_(hs[t])  # h_t = f(a_t), in place
            if bias_hy is None:
                torch.mm(hs[t], w_hy_t, out=ys[t])  # z_t = W_hy h_t
            else:
                torch.addmm(bias_hy, hs[t], w_hy_t, out=ys[t])  # z_t = W_hy h_t + b_hy
            if fused is not None:  # g and the mask below, in one compiled call
                m = None if mask is None else mask[t]
                fused.elman_forward(ys[t], y, output_nonlinearity, m)
                y = ys[t]
                continue
            g_(ys[t])  # y_t = g(z_t), in place
            if mask is not None:  # past a sequence's end, carry its state: y_t = y_{t-1}
                torch.where(mask[t], ys[t], y, out=ys[t])
            y = ys[t]
        # Outputs: the states themselves, zeroed past each sequence's end.
        out = ys if mask is None else torch.where(mask, ys, 0.0)  # (T, B, O)
        ctx.nonlinearity, ctx.output_nonlinearity = nonlinearity, output_nonlinearity
        # Backward needs h_t (for f'(a_t) and ∂W_hy), y_t (for g'(z_t), and as y_{t-1} of step
        # t+1 for ∂W_yh), y_0 and the two weights that the recursion runs through.
        save_with_origin(ctx, origin_args, y0, weight_yh, weight_hy, hs, ys, mask)
        return out, ys[-1].clone()  # final state y_T (B, O), its own tensor

    @staticmethod
    def backward(ctx: FunctionCtx, grad_ys: Tensor, grad_yT: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            return second_order(ctx, 9, ctx.saved_tensors[6:], (grad_ys, grad_yT))
        y0, weight_yh, weight_hy, hs, ys, mask = ctx.saved_tensors[:6]
        need_xg, need_y0, need_w_yh, need_b_yh, need_w_hy, need_b_hy = ctx.needs_input_grad[:6]
        T = hs.shape[0]
        softmax = ctx.output_nonlinearity == "softmax"

        # Both derivatives for all steps at once, from the saved outputs.
        fprime = derivative_from_output(ctx.nonlinearity, hs)  # (T, B, H), or None if f' = 1
        if softmax:  # g'(z_t)ᵀ e = y_t ⊙ (e − Σ e ⊙ y_t), with y_t zeroed past the end
            y_jac = ys if mask is None else ys * mask  # (T, B, O)
            gprime = None
        else:  # diagonal g'(z_t), times m_t: no gradient enters z_t past a sequence's end
            gprime = derivative_from_output(ctx.output_nonlinearity, ys)  # (T, B, O) or None
            if mask is not None:
                gprime = mask.to(ys.dtype) if gprime is None else gprime * mask

        delta_z = torch.empty_like(ys)  # (T, B, O): δz_t = ∂L/∂z_t
        delta_a = torch.empty_like(hs)  # (T, B, H): δa_t = ∂L/∂a_t
        delta_y = grad_yT.clone(memory_format=torch.contiguous_format)  # (B, O): δy_T
        fused = None if softmax else step_ops(hs)  # the compiled step (rnnkit.kernels.fused)
        for t in range(T - 1, -1, -1):
            if fused is not None:  # the next lines up to softmax's, in one compiled call
                gp_t = None if gprime is None else gprime[t]
                fused.elman_backward(grad_ys[t], delta_y, gp_t, delta_z[t])  # δz_t = g' ⊙ e
                torch.mm(delta_z[t], weight_hy, out=delta_a[t])
                if fprime is not None:
                    delta_a[t].mul_(fprime[t])
                if mask is None:
                    torch.mm(delta_a[t], weight_yh, out=delta_y)
                else:
                    torch.where(mask[t], delta_a[t] @ weight_yh, delta_y, out=delta_y)
                continue
            # The total gradient at y_t: from its own output plus from the future.
            e = torch.add(grad_ys[t], delta_y, out=delta_z[t])  # ∂L_t/∂y_t + δy_t
            # Through the output nonlinearity: δz_t = g'(z_t)ᵀ e.
            if softmax:
                y = y_jac[t]
                e.sub_((e * y).sum(dim=-1, keepdim=True)).mul_(y)  # y ⊙ (e − Σ e ⊙ y)
            elif gprime is not None:
                e.mul_(gprime[t])
            # Through the output weights and the hidden nonlinearity: δa_t = f'(a_t) ⊙ W_hyᵀ δz_t.
            torch.mm(delta_z[t], weight_hy, out=delta_a[t])
            if fprime is not None:
                delta_a[t].mul_(fprime[t])
            # Through the recurrent weights: δy_{t-1} = W_yhᵀ δa_t.
            if mask is None:
                torch.mm(delta_a[t], weight_yh, out=delta_y)
            else:  # ... or, past a sequence's end, carried back unchanged: δy_{t-1} = δy_t
                torch.where(mask[t], delta_a[t] @ weight_yh, delta_y, out=delta_y)

        H, O = hs.shape[-1], ys.shape[-1]
        grad_xg = delta_a if need_xg else None  # ∂L/∂x̃_t = δa_t
        grad_y0 = delta_y if need_y0 else None  # ∂L/∂y_0 = δy_0
        grad_w_yh = grad_b_yh = grad_w_hy = grad_b_hy = None
        if need_w_yh:
            # ∂L/∂W_yh = Σ_t δa_t y_{t-1}ᵀ: one product over all T·B rows.
            y_prev = torch.cat([y0.unsqueeze(0), ys[:-1]])  # (T, B, O): y_{t-1}
            grad_w_yh = delta_a.reshape(-1, H).t() @ y_prev.reshape(-1, O)  # (H, O)
        if need_b_yh:
            grad_b_yh = delta_a.sum(dim=(0, 1))  # ∂L/∂b_yh = Σ_t δa_t   (H,)
        if need_w_hy:
            # ∂L/∂W_hy = Σ_t δz_t h_tᵀ: one product over all T·B rows.
            grad_w_hy = delta_z.reshape(-1, O).t() @ hs.reshape(-1, H)  # (O, H)
        if need_b_hy:
            grad_b_hy = delta_z.sum(dim=(0, 1))  # ∂L/∂b_hy = Σ_t δz_t   (O,)
        grads = (grad_xg, grad_y0, grad_w_yh, grad_b_yh, grad_w_hy, grad_b_hy)
        # none for the mask and the two nonlinearities' names
        return (*grads, None, None, None, *ctx.no_origin_grads)


def jordan_sequence(
    cell: JordanCell, xg: Tensor, state: Tensor, mask: Tensor | None, xs: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Run ``cell`` over a whole sequence: returns ys (T, B, O) and the final state (B, O).

    ``xg`` (T, B, H) is W_ih x + b_ih for every step; ``state`` (B, O) is y_0; ``mask``
    (T, B, 1) bool or None. Same results as ``Recurrent(cell, use_kernel=False)``. ``xs``, the
    sequence xg was projected from, makes second derivatives available (``kernels.dispatch``).
    """
    tail = () if xs is None else origin(cell, xs, state, mask)
    return JordanBPTT.apply(
        xg,
        state,
        cell.weight_yh,
        cell.bias_yh,
        cell.weight_hy,
        cell.bias_hy,
        mask,
        cell.nonlinearity,
        cell.output_nonlinearity,
        *tail,
    )


@register_kernel(JordanCell)
def run_jordan(
    cell: JordanCell, xs: Tensor, state: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``cell`` over xs (T, B, I) from ``state`` y_0 (B, O): the kernel of ``JordanCell``."""
    xg = F.linear(xs, cell.weight_ih, cell.bias_ih)  # (T, B, H): all steps in one product
    return jordan_sequence(cell, xg, state, mask, xs)
