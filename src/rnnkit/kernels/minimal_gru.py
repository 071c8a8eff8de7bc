r"""BPTT kernel of the minimal GRU (``rnnkit.cells.minimal_gru.MinimalGRUCell``).

Notation for one step (c = c_{t-1}, c' = c_t). The input projection xg_t = W_ih x_t + b_ih
arrives precomputed; x_u, x_c are its two H-wide parts (gate order u, c~).

Forward; one recurrent product (B, 2H) per step:

    [a_u, a_c] = [x_u, x_c] + W_hh c + b_hh
    u  = σ(a_u)
    c~ = tanh(a_c)
    c' = u ⊙ c~ + (1 - u) ⊙ c  =  c + u ⊙ (c~ - c)

Backward. g = ∂L/∂c' is the whole gradient reaching the step's new state: that of its own
output, ∂L_t/∂c_t, plus δc_t, which flows back from the later steps. With σ' = u (1 - u) and
tanh' = 1 - c~²:

    ∂L/∂a_u = g ⊙ (c~ - c) ⊙ u (1 - u)
    ∂L/∂a_c = g ⊙ u ⊙ (1 - c~²)
    dA = ∂L/∂xg = [∂L/∂a_u, ∂L/∂a_c]               (xg, W_hh c and b_hh add into a)
    δc_{t-1} = g ⊙ (1 - u) + dA W_hh                 (direct path + through the product)
    ∂W_hh = Σ_t dA_tᵀ c_{t-1},   ∂b_hh = Σ_t dA_t

The sums over t are single matrix products over all T·B rows. The factors that multiply g
((c~ - c) u (1 - u) and u (1 - c~²)) do not depend on δc and are computed for all t at once before
the loop; the loop multiplies them by g and does the recurrent product.

Masking, m_t (B, 1): forward c_t = m_t ? c' : c_{t-1} and y_t = m_t ? c' : 0; backward
g = m_t ⊙ (∂L_t/∂y_t + δc_t) and δc_{t-1} = m_t ? (the above) : δc_t.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.minimal_gru import MinimalGRUCell
from rnnkit.kernels.dispatch import origin, save_with_origin, second_order
from rnnkit.kernels.fused import step_ops
from rnnkit.kernels.onednn import StepProduct
from rnnkit.kernels.registry import register_kernel


class MinimalGRUBPTT(torch.autograd.Function):
    """(xg, c0, weight_hh, bias_hh, mask) -> (ys, c_T); see the module docstring."""

    @staticmethod
    def forward(
        ctx: Any,
        xg: Tensor,  # (T, B, 2H)
        c0: Tensor,  # (B, H)
        weight_hh: Tensor,  # (2H, H)
        bias_hh: Tensor | None,  # (2H,)
        mask: Tensor | None,  # (T, B, 1) bool
        *origin_args,  # for second derivatives: see rnnkit.kernels.dispatch
    ) -> tuple[Tensor, Tensor]:
        T, B, H2 = xg.shape
        H = H2 // 2
        xgb = xg if bias_hh is None else xg + bias_hh  # (T, B, 2H), b_hh folded in once
        product = StepProduct(weight_hh, B)  # c ↦ W_hh c
        gates = xg.new_empty(T, B, 2 * H)  # (T, B, 2H) [u, c~]
        cs = xg.new_empty(T, B, H)  # (T, B, H) states c_1..c_T
        c = c0
        fused = step_ops(xg)  # the compiled step, or None (rnnkit.kernels.fused)
        for t in range(T):
            A = product.into(c, gates[t], add=xgb[t])  # [a_u, a_c]
            if fused is not None:  # the element-wise work below, in one compiled call
                fused.minimal_gru_forward(A, c, cs[t], None if mask is None else mask[t])
                c = cs[t]
                continue
            A[:, :H].sigmoid_()  # u
            A[:, H:].tanh_()  # c~
            u, c_tilde = A.chunk(2, dim=1)
            torch.lerp(c, c_tilde, u, out=cs[t])  # c' = c + u ⊙ (c~ - c)
            if mask is not None:
                torch.where(mask[t], cs[t], c, out=cs[t])
            c = cs[t]
        ys = cs if mask is None else cs.masked_fill(~mask, 0.0)  # (T, B, H)
        ctx.has_bias = bias_hh is not None
        save_with_origin(ctx, origin_args, c0, weight_hh, gates, cs, mask)
        return ys, cs[-1].clone()

    @staticmethod
    def backward(ctx: Any, gys: Tensor, gcT: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            return second_order(ctx, 5, ctx.saved_tensors[5:], (gys, gcT))
        c0, W, gates, cs, mask = ctx.saved_tensors[:5]
        T, B, H = cs.shape
        need_xg, need_c0, need_W, need_b = ctx.needs_input_grad[:4]
        c_prev = torch.cat([c0.unsqueeze(0), cs[:-1]])  # (T, B, H) c_{t-1} of every step
        u, c_tilde = gates.chunk(2, dim=-1)  # (T, B, H) each
        not_m = None if mask is None else ~mask  # (T, B, 1)
        # dA = g ⊙ [∂c'/∂a_u, ∂c'/∂a_c]: the factors now, g in the loop
        dA = torch.cat([(c_tilde - c_prev) * u * (1 - u), u * (1 - c_tilde * c_tilde)], -1)
        dc = c0.new_empty(B, H)  # δc, from δc_T = ∂L/∂c_T down to δc_0 = ∂L/∂c0
        dc.copy_(gcT)
        g = c0.new_empty(B, H)  # ∂L/∂c' of the current step
        carry = c0.new_empty(B, H)  # the part of δc_{t-1} outside W_hh's product
        fused = step_ops(cs)  # the compiled step, or None (rnnkit.kernels.fused)
        back = StepProduct(W.t().contiguous(), B)  # dA ↦ dA W_hh
        for t in range(T - 1, -1, -1):
            if fused is not None:  # the element-wise work below, in one compiled call
                m_t = None if mask is None else mask[t]
                fused.minimal_gru_backward(dc, gys[t], gates[t], dA[t], carry, m_t)
                back.into(dA[t], dc, add=carry)
                continue
            torch.add(dc, gys[t], out=g)  # g = ∂L_t/∂c_t + δc_t
            if not_m is not None:
                g.masked_fill_(not_m[t], 0.0)  # past the end: c_t does not depend on c'
            dA[t].view(B, 2, H).mul_(g.unsqueeze(1))  # [∂L/∂a_u, ∂L/∂a_c]
            torch.addcmul(g, g, u[t], value=-1.0, out=carry)  # direct path g ⊙ (1 - u)
            if not_m is not None:
                torch.where(not_m[t], dc, carry, out=carry)  # carried state: δc unchanged
            back.into(dA[t], dc, add=carry)  # δc_{t-1} = g ⊙ (1 - u) + dA W_hh
        dW = None
        if need_W:  # ∂W_hh = Σ_t dA_tᵀ c_{t-1}
            dW = torch.mm(dA.reshape(T * B, 2 * H).t(), c_prev.reshape(T * B, H))
        db = dA.sum(dim=(0, 1)) if ctx.has_bias and need_b else None  # ∂b_hh = Σ_t dA_t
        return dA if need_xg else None, dc if need_c0 else None, dW, db, None, *ctx.no_origin_grads


def minimal_gru_sequence(
    cell: MinimalGRUCell,
    xg: Tensor,
    state: Tensor,
    mask: Tensor | None,
    xs: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Run ``cell`` over xg = W_ih x + b_ih (T, B, 2H) from c0 = ``state`` (B, H).

    ``mask`` (T, B, 1) bool or None. Returns ys (T, B, H), zero at masked steps, and c_T (B, H),
    each sequence's state after its own last valid step; backward is the hand-derived BPTT.
    """
    tail = () if xs is None else origin(cell, xs, state, mask)
    return MinimalGRUBPTT.apply(xg, state, cell.weight_hh, cell.bias_hh, mask, *tail)


MinimalGRUSequence = MinimalGRUBPTT
"""The old name of ``MinimalGRUBPTT``."""


@register_kernel(MinimalGRUCell)
def run_minimal_gru(
    cell: MinimalGRUCell, xs: Tensor, state: Tensor, mask: Tensor | None
) -> tuple[Tensor, Tensor]:
    """``cell`` over xs (T, B, I) from ``state`` (B, H): the kernel of ``MinimalGRUCell``."""
    xg = F.linear(xs, cell.weight_ih, cell.bias_ih)  # (T, B, 2H): all steps in one product
    return minimal_gru_sequence(cell, xg, state, mask, xs)
