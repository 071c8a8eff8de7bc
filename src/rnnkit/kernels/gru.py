r"""BPTT kernel of the GRU (``rnnkit.cells.gru.GRUCell``), in both of its conventions.

Notation for one step (h = h_{t-1}, h' = h_t). The input projection xg_t = W_ih x_t + b_ih
arrives precomputed; x_r, x_z, x_n are its three H-wide parts (gate order r, z, n).

Forward, ``reset_after=True`` (torch, cuDNN); one recurrent product (B, 3H) per step:

    [p_r, p_z, p_n] = W_hh h + b_hh
    r  = σ(a_r),     a_r = x_r + p_r
    z  = σ(a_z),     a_z = x_z + p_z
    n  = tanh(a_n),  a_n = x_n + r ⊙ p_n
    h' = (1 - z) ⊙ n + z ⊙ h

Forward, ``reset_after=False`` (Cho et al. 2014); the (2H) product for r, z, then the product of
the reset state:

    r  = σ(a_r),     a_r = x_r + W_hr h + b_hr
    z  = σ(a_z),     a_z = x_z + W_hz h + b_hz
    s  = r ⊙ h                                       (the reset state)
    n  = tanh(a_n),  a_n = x_n + W_hn s + b_hn
    h' = (1 - z) ⊙ n + z ⊙ h

Backward. g = ∂L/∂h' is the whole gradient reaching the step's new state: that of its own
output, ∂L_t/∂h_t, plus δh_t, which flows back from the later steps. With σ' = r (1 - r) and
tanh' = 1 - n², and h' = n + z ⊙ (h - n):

    ∂L/∂a_z = g ⊙ (h - n) ⊙ z (1 - z)
    ∂L/∂a_n = g ⊙ (1 - z) ⊙ (1 - n²)

  ``reset_after=True``:

    ∂L/∂a_r = ∂L/∂a_n ⊙ p_n ⊙ r (1 - r)
    ∂L/∂p_n = ∂L/∂a_n ⊙ r
    ∂L/∂xg  = [∂L/∂a_r, ∂L/∂a_z, ∂L/∂a_n]
    dP      = [∂L/∂a_r, ∂L/∂a_z, ∂L/∂p_n]           (gradient of W_hh h + b_hh, (B, 3H))
    δh_{t-1} = g ⊙ z + dP W_hh                       (direct path + through the product)
    ∂W_hh = Σ_t dP_tᵀ h_{t-1},   ∂b_hh = Σ_t dP_t

  ``reset_after=False``:

    ∂L/∂s   = ∂L/∂a_n W_hn
    ∂L/∂a_r = ∂L/∂s ⊙ h ⊙ r (1 - r)
    dA = ∂L/∂xg = [∂L/∂a_r, ∂L/∂a_z, ∂L/∂a_n]      (xg, the products and b_hh add into a)
    δh_{t-1} = g ⊙ z + ∂L/∂s ⊙ r + [∂L/∂a_r, ∂L/∂a_z] W_h{rz}
    ∂W_h{rz} = Σ_t [∂L/∂a_r, ∂L/∂a_z]_tᵀ h_{t-1},   ∂W_hn = Σ_t (∂L/∂a_n)_tᵀ s_t
    ∂b_hh = Σ_t dA_t

The sums over t are single matrix products over all T·B rows. The factors that multiply g and do
not depend on δh (z (1 - z) (h - n), (1 - z)(1 - n²), ...) are computed for all t at once before
the loop; the loop multiplies them by g and does the recurrent product(s).

Masking, m_t (B, 1): forward h_t = m_t ? h' : h_{t-1} and y_t = m_t ? h' : 0; backward
g = m_t ⊙ (∂L_t/∂y_t + δh_t) and δh_{t-1} = m_t ? (the above) : δh_t.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from rnnkit.cells.gru import GRUCell
from rnnkit.kernels.dispatch import (
    origin,
    save_with_origin,
    second_order,
    torch_op_may_run,
    torch_op_sequence,
)
from rnnkit.kernels.fused import step_ops
from rnnkit.kernels.onednn import StepProduct, applies
from rnnkit.kernels.registry import register_kernel

PACK_MIN_MACS = 2**26
"""The reset-before kernel's products take oneDNN's packed weight only from this many
multiply-adds (the other kernels: ``rnnkit.kernels.onednn.MIN_MACS``, 2^24): its four smaller
products a step gained nothing packed at 2^23-2^24 and lost 7% of the training step at ``rnnkit
bench speed``'s config A (B 32, H 512), and gained 2% at config C (B 128, H 1024, 2^27-2^28):
docs/compiled_step.md."""


class GRUBPTT(torch.autograd.Function):
    """(xg, h0, weight_hh, bias_hh, mask, reset_after) -> (ys, h_T); see the module docstring."""

    @staticmethod
    def forward(
        ctx: Any,
        xg: Tensor,  # (T, B, 3H)
        h0: Tensor,  # (B, H)
        weight_hh: Tensor,  # (3H, H)
        bias_hh: Tensor | None,  # (3H,)
        mask: Tensor | None,  # (T, B, 1) bool
        reset_after: bool,
        *origin_args,  # for second derivatives: see rnnkit.kernels.dispatch
    ) -> tuple[Tensor, Tensor]:
        T, B, H3 = xg.shape
        H = H3 // 3
        hs = xg.new_empty(T, B, H)  # (T, B, H) states h_1..h_T
        ns = xg.new_empty(T, B, H)  # (T, B, H) candidates n
        h = h0
        if reset_after:
            gates = xg.new_empty(T, B, 3 * H)  # (T, B, 3H) [r, z, p_n]
            product = StepProduct(weight_hh, B, bias_hh)  # h ↦ W_hh h + b_hh
            fused = step_ops(xg)  # the compiled step, or None (rnnkit.kernels.fused)
            for t in range(T):
                P = gates[t]  # (B, 3H)
                product.into(h, P)  # [p_r, p_z, p_n] = W_hh h + b_hh
                if fused is not None:  # the element-wise work below, in one compiled call
                    fused.gru_forward(P, xg[t], h, ns[t], hs[t], None if mask is None else mask[t])
                    h = hs[t]
                    continue
                P[:, : 2 * H].add_(xg[t, :, : 2 * H]).sigmoid_()  # r, z, in place of p_r, p_z
                r, z, p_n = P.split(H, dim=1)
                n = torch.addcmul(xg[t, :, 2 * H :], r, p_n, out=ns[t]).tanh_()
                torch.lerp(n, h, z, out=hs[t])  # h' = n + z ⊙ (h - n)
                if mask is not None:
                    torch.where(mask[t], hs[t], h, out=hs[t])
                h = hs[t]
        else:
            xgb = xg if bias_hh is None else xg + bias_hh  # (T, B, 3H), b_hh folded in once
            W_rz_t, W_n_t = weight_hh[: 2 * H].t(), weight_hh[2 * H :].t()  # (H, 2H), (H, H)
            gates = xg.new_empty(T, B, 2 * H)  # (T, B, 2H) [r, z]
            s = xg.new_empty(B, H)  # (B, H) reset state r ⊙ h
            fused = step_ops(xg)  # the compiled step, or None (rnnkit.kernels.fused)
            if fused is not None:  # the loop below, its element-wise work in two compiled calls
                rz_product = StepProduct(weight_hh[: 2 * H], B, None, PACK_MIN_MACS)  # h W_h{rz}ᵀ
                n_product = StepProduct(weight_hh[2 * H :], B, None, PACK_MIN_MACS)  # s W_hnᵀ
                for t in range(T):
                    rz_product.into(h, gates[t])
                    fused.gru_reset_before_gates(gates[t], xgb[t, :, : 2 * H], h, s)
                    n_product.into(s, ns[t])
                    m_t = None if mask is None else mask[t]
                    fused.gru_reset_before_state(
                        ns[t], xgb[t, :, 2 * H :], gates[t, :, H:], h, hs[t], m_t
                    )
                    h = hs[t]
            else:
                for t in range(T):
                    rz = torch.addmm(xgb[t, :, : 2 * H], h, W_rz_t, out=gates[t]).sigmoid_()
                    r, z = rz.chunk(2, dim=1)
                    torch.mul(r, h, out=s)
                    n = torch.addmm(xgb[t, :, 2 * H :], s, W_n_t, out=ns[t]).tanh_()
                    torch.lerp(n, h, z, out=hs[t])  # h' = n + z ⊙ (h - n)
                    if mask is not None:
                        torch.where(mask[t], hs[t], h, out=hs[t])
                    h = hs[t]
        ys = hs if mask is None else hs.masked_fill(~mask, 0.0)  # (T, B, H)
        ctx.reset_after = reset_after
        ctx.has_bias = bias_hh is not None
        save_with_origin(ctx, origin_args, h0, weight_hh, gates, ns, hs, mask)
        return ys, hs[-1].clone()

    @staticmethod
    def backward(ctx: Any, gys: Tensor, ghT: Tensor) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            return second_order(ctx, 6, ctx.saved_tensors[6:], (gys, ghT))
        h0, W, gates, n, hs, mask = ctx.saved_tensors[:6]
        T, B, H = hs.shape
        need_xg, need_h0, need_W, need_b = ctx.needs_input_grad[:4]
        h_prev = torch.cat([h0.unsqueeze(0), hs[:-1]])  # (T, B, H) h_{t-1} of every step
        not_m = None if mask is None else ~mask  # (T, B, 1)
        G = torch.empty_like(hs)  # (T, B, H) g_t = ∂L/∂h' of every step
        dh = h0.new_empty(B, H)  # δh, from δh_T = ∂L/∂h_T down to δh_0 = ∂L/∂h0
        dh.copy_(ghT)
        carry = h0.new_empty(B, H)  # the part of δh_{t-1} outside W_hh's product(s)
        dW = W.new_empty(W.shape) if need_W else None  # (3H, H)

        if ctx.reset_after:
            r, z, p_n = gates.split(H, dim=-1)  # (T, B, H) each
            fused = step_ops(hs)  # the compiled step, or None (rnnkit.kernels.fused)
            # dP = g ⊙ [∂h'/∂a_r, ∂h'/∂a_z, ∂h'/∂p_n]: the factors now, g in the loop
            if fused is not None:  # the same in one compiled pass over all T·B rows
                dn_da, dP = torch.empty_like(n), torch.empty_like(gates)
                fused.gru_factors(gates, n, h_prev, dP, dn_da)
            else:
                dn_da = (1 - z) * (1 - n * n)  # ∂h'/∂a_n
                dP = torch.cat(
                    [dn_da * p_n * r * (1 - r), (h_prev - n) * z * (1 - z), dn_da * r], -1
                )
            back = StepProduct(W.t().contiguous(), B)  # dP ↦ dP W_hh
            for t in range(T - 1, -1, -1):
                if fused is not None:  # the element-wise work below, in one compiled call
                    m_t = None if mask is None else mask[t]
                    fused.gru_backward(dh, gys[t], gates[t], dP[t], G[t], carry, m_t)
                    back.into(dP[t], dh, add=carry)  # δh_{t-1} = carry + dP W_hh
                    continue
                g = torch.add(dh, gys[t], out=G[t])  # g = ∂L_t/∂h_t + δh_t
                if not_m is not None:
                    g.masked_fill_(not_m[t], 0.0)  # past the end: h_t does not depend on h'
                dP[t].view(B, 3, H).mul_(g.unsqueeze(1))  # [∂L/∂a_r, ∂L/∂a_z, ∂L/∂p_n]
                torch.mul(g, z[t], out=carry)  # direct path g ⊙ z
                if not_m is not None:
                    torch.where(not_m[t], dh, carry, out=carry)  # carried state: δh unchanged
                back.into(dP[t], dh, add=carry)  # δh_{t-1} = g ⊙ z + dP W_hh
            if need_W:  # ∂W_hh = Σ_t dP_tᵀ h_{t-1}
                torch.mm(dP.reshape(T * B, 3 * H).t(), h_prev.reshape(T * B, H), out=dW)
            db = dP.sum(dim=(0, 1)) if ctx.has_bias and need_b else None  # ∂b_hh = Σ_t dP_t
            dxg = None
            if need_xg:  # dP itself, [∂L/∂a_r, ∂L/∂a_z, ·] (T, B, 3H), its last part now
                torch.mul(G, dn_da, out=dP[..., 2 * H :])  # ∂L/∂a_n, not ∂L/∂p_n
                dxg = dP
        else:
            r, z = gates.chunk(2, dim=-1)  # (T, B, H) each
            W_rz, W_n = W[: 2 * H], W[2 * H :]  # (2H, H), (H, H)
            # dA = [∂L/∂a_r, ∂L/∂a_z, ∂L/∂a_n]; their factors now: ∂L/∂a_r = ∂L/∂s ⊙ h r (1 - r),
            # ∂L/∂a_z = g ⊙ (h - n) z (1 - z), ∂L/∂a_n = g ⊙ (1 - z)(1 - n²)
            fused = step_ops(hs)  # the compiled step, or None (rnnkit.kernels.fused)
            if fused is not None:  # the factors in one compiled pass over all T·B rows
                dA = gates.new_empty(T, B, 3 * H)
                fused.gru_reset_before_factors(gates, n, h_prev, dA)
            else:
                dA = torch.cat(
                    [h_prev * r * (1 - r), (h_prev - n) * z * (1 - z), (1 - z) * (1 - n * n)], -1
                )  # (T, B, 3H)
            ds = h0.new_empty(B, H)  # ∂L/∂s
            if fused is not None:  # the loop below, its element-wise work in two compiled calls
                back_rz = StepProduct(W_rz.t().contiguous(), B, None, PACK_MIN_MACS)
                back_n = StepProduct(W_n.t().contiguous(), B, None, PACK_MIN_MACS)  # ∂L/∂a_n W_hn
                for t in range(T - 1, -1, -1):
                    m_t = None if mask is None else mask[t]
                    fused.gru_reset_before_backward_a(dh, gys[t], dA[t], G[t], m_t)
                    back_n.into(dA[t, :, 2 * H :], ds)  # ∂L/∂s
                    fused.gru_reset_before_backward_b(ds, G[t], gates[t], dh, dA[t], carry, m_t)
                    back_rz.into(dA[t, :, : 2 * H], dh, add=carry)
            else:
                for t in range(T - 1, -1, -1):
                    g = torch.add(dh, gys[t], out=G[t])  # g = ∂L_t/∂h_t + δh_t
                    if not_m is not None:
                        g.masked_fill_(not_m[t], 0.0)  # past the end: h_t does not depend on h'
                    dA[t, :, H:].view(B, 2, H).mul_(g.unsqueeze(1))  # ∂L/∂a_z, ∂L/∂a_n
                    torch.mm(dA[t, :, 2 * H :], W_n, out=ds)  # ∂L/∂s = ∂L/∂a_n W_hn
                    dA[t, :, :H].mul_(ds)  # ∂L/∂a_r
                    torch.mul(g, z[t], out=carry).addcmul_(ds, r[t])  # g ⊙ z + ∂L/∂s ⊙ r
                    if not_m is not None:
                        torch.where(not_m[t], dh, carry, out=carry)  # carried state: δh unchanged
                    torch.addmm(carry, dA[t, :, : 2 * H], W_rz, out=dh)  # + [∂a_r, ∂a_z] W_h{rz}
            dxg = dA if need_xg else None
            if need_W:
                TB = T * B
                # ∂W_h{rz} = Σ_t [∂L/∂a_r, ∂L/∂a_z]_tᵀ h_{t-1};  ∂W_hn = Σ_t (∂L/∂a_n)_tᵀ s_t
                torch.mm(
                    dA[..., : 2 * H].reshape(TB, 2 * H).t(), h_prev.reshape(TB, H), out=dW[: 2 * H]
                )
                s = (r * h_prev).reshape(TB, H)  # (T·B, H) reset states, recomputed
                torch.mm(dA[..., 2 * H :].reshape(TB, H).t(), s, out=dW[2 * H :])
            db = dA.sum(dim=(0, 1)) if ctx.has_bias and need_b else None  # ∂b_hh = Σ_t dA_t
        return dxg, dh if need_h0 else None, dW, db, None, None, *ctx.no_origin_grads


def gru_sequence(
    cell: GRUCell, xg: Tensor, state: Tensor, mask: Tensor | None, xs: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Run ``cell`` over xg = W_ih x + b_ih (T, B, 3H) from h0 = ``state`` (B, H).

    ``mask`` (T, B, 1) bool or None. Returns ys (T, B, H), zero at masked steps, and h_T (B, H),
    each sequence's state after its own last valid step; backward is the hand-derived BPTT.
    ``xs``, the sequence xg was projected from, makes second derivatives available.
    """
    tail = () if xs is None else origin(cell, xs, state, mask)
    return GRUBPTT.apply(xg, state, cell.weight_hh, cell.bias_hh, mask, cell.reset_after, *tail)


GRUSequence = GRUBPTT
"""The old name of ``GRUBPTT``."""


HAND_ROWS = (4, 64)
HAND_MIN_WEIGHT = 2**20
"""In inference the hand kernel is kept only where its recurrent product takes oneDNN's packed
weight (``rnnkit.kernels.onednn.applies``), W_hh has at least ``HAND_MIN_WEIGHT`` elements and
the batch is within ``HAND_ROWS``: there the packed weight saves the per-step repacking of a
large weight that torch's op does, more than its loop of C++ steps saves over the hand kernel's
Python steps (measured over H 128-2048, B 1-128, one and two threads:
docs/speed.md#issue-17s-targets-on-an-intel-xeon)."""


def use_torch_op(cell: GRUCell, xs: Tensor, state: Tensor, mask: Tensor | None) -> bool:
    """Whether the GRU kernel runs torch's own GRU op (``torch._VF.gru``) for ``cell`` over xs:
    inference (no gradient recorded), ``reset_after`` (torch's convention), no mask, T ≥ 1, the
    "gru" switch of ``rnnkit.kernels.backends`` at "auto", and not where the hand kernel's
    forward is the faster one (``HAND_ROWS``, ``HAND_MIN_WEIGHT``). Training keeps the
    hand-derived kernel."""
    if not cell.reset_after or not torch_op_may_run("gru", cell, xs, state, mask):
        return False
    B, W = xs.shape[1], cell.weight_hh
    low, high = HAND_ROWS
    hand = low <= B <= high and W.numel() >= HAND_MIN_WEIGHT and applies(W, B)
    return not hand


def gru_sequence_torch(cell: GRUCell, xs: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
    """``cell`` over xs (T, B, I) from ``state`` (B, H) through torch's op (``use_torch_op``):
    ys (T, B, H) and h_T (B, H), the same function as ``gru_sequence`` without a mask."""
    return torch_op_sequence(torch._VF.gru, cell, xs, state)


@register_kernel(GRUCell)
def run_gru(cell: GRUCell, xs: Tensor, state: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """``cell`` over xs (T, B, I) from ``state`` (B, H): the kernel of ``GRUCell`` (in
    inference, torch's op where ``use_torch_op`` says so: the same function)."""
    if use_torch_op(cell, xs, state, mask):
        return gru_sequence_torch(cell, xs, state)
    xg = F.linear(xs, cell.weight_ih, cell.bias_ih)  # (T, B, 3H): all steps in one product
    return gru_sequence(cell, xg, state, mask, xs)
