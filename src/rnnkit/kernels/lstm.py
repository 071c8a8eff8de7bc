r"""The LSTM kernel: forward over a whole sequence, and backpropagation through time by hand.

Forward, step t = 1..T (gate order i, f, g, o; ``xg_t`` = W_ih x_t + b_ih precomputed; [·] are
the options: peephole, layer_norm)::

    a_t   = W_hh h_{t-1}                                   (4H)  the one recurrent product
    n_t   = a_t                 or  LN(a_t) ⊙ γ_hh         (layer_norm over all 4H, gain only)
    z_t   = xg_t + n_t + b_hh                              (4H)  pre-activations z_i z_f z_g z_o
    i_t   = σ(z_i [+ w_ci ⊙ c_{t-1}])
    f_t   = σ(z_f [+ w_cf ⊙ c_{t-1}])
    g_t   = tanh(z_g)
    c_t   = f_t ⊙ c_{t-1} + i_t ⊙ g_t
    o_t   = σ(z_o [+ w_co ⊙ c_t])
    ĉ_t   = c_t                 or  LN(c_t) ⊙ γ_c + β_c    (layer_norm over H)
    h_t   = o_t ⊙ tanh(ĉ_t)

with LN(v) = (v - μ) / σ, μ the mean and σ² + ε the biased variance plus ε over the last
dimension (exactly ``F.layer_norm``). With a mask, a step past a sequence's end keeps the state,
(h_t, c_t) = (h_{t-1}, c_{t-1}), and outputs y_t = 0; otherwise y_t = h_t.

Backward. Let δh_t = ∂L/∂h_t and δc_t = ∂L/∂c_t, the gradients reaching step t's state from the
future (steps > t), δh_T = ∂L/∂h_T and δc_T = ∂L/∂c_T from the final state. Step t, from T
down to 1, first adds the direct loss term, Δh = ∂L_t/∂y_t + δh_t, Δc = δc_t, and then::

    ∂L/∂o      = Δh ⊙ tanh(ĉ)                    ∂L/∂z_o = ∂L/∂o ⊙ o (1 - o)
    ∂L/∂ĉ      = Δh ⊙ o ⊙ (1 - tanh²(ĉ))
    ∂L/∂c      = Δc + (∂L/∂ĉ  or  LN'(∂L/∂ĉ ⊙ γ_c))  [+ ∂L/∂z_o ⊙ w_co]
    ∂L/∂i      = ∂L/∂c ⊙ g                       ∂L/∂z_i = ∂L/∂i ⊙ i (1 - i)
    ∂L/∂f      = ∂L/∂c ⊙ c_{t-1}                 ∂L/∂z_f = ∂L/∂f ⊙ f (1 - f)
    ∂L/∂g      = ∂L/∂c ⊙ i                       ∂L/∂z_g = ∂L/∂g ⊙ (1 - g²)
    ∂L/∂a      = ∂L/∂z  or  LN'(∂L/∂z ⊙ γ_hh)
    δh_{t-1}   = W_hhᵀ ∂L/∂a                     (= (∂h_t/∂h_{t-1})ᵀ (∂L_t/∂h_t + δh_t))
    δc_{t-1}   = ∂L/∂c ⊙ f  [+ ∂L/∂z_i ⊙ w_ci + ∂L/∂z_f ⊙ w_cf]

where LN'(d) is the backward of v ↦ v̂ = (v - μ)/σ given d = ∂L/∂v̂::

    ∂L/∂v = (1/σ) (d - mean(d) - v̂ ⊙ mean(d ⊙ v̂))

At a masked step the step's own gradients are zero and the future's pass through unchanged:
δh_{t-1} = δh_t, δc_{t-1} = δc_t. The input-gate gradient is ∂L/∂xg_t = ∂L/∂z_t, and the
parameter gradients are sums over all T·B rows (one matrix product for W_hh)::

    ∂L/∂W_hh = Σ_t ∂L/∂a_tᵀ h_{t-1}              ∂L/∂b_hh = Σ_t ∂L/∂z_t
    ∂L/∂w_ci = Σ_t ∂L/∂z_i ⊙ c_{t-1}             ∂L/∂w_cf = Σ_t ∂L/∂z_f ⊙ c_{t-1}
    ∂L/∂w_co = Σ_t ∂L/∂z_o ⊙ c_t
    ∂L/∂γ_hh = Σ_t ∂L/∂z_t ⊙ LN(a_t)
    ∂L/∂γ_c  = Σ_t ∂L/∂ĉ_t ⊙ LN(c_t)             ∂L/∂β_c  = Σ_t ∂L/∂ĉ_t

Saved for backward: the gate activations i, f, g, o (T, B, 4H), the carried states h and c
(T+1, B, H) each (h_0, c_0 first), the mask, and for layer_norm the raw recurrent products
a (T, B, 4H) with their mean and 1/σ (T, B, 1), and the mean and 1/σ of c (T, B, 1).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnnkit.cells.lstm import LN_EPS


def _ln_backward(d: Tensor, v_hat: Tensor, rstd: Tensor, out: Tensor | None = None) -> Tensor:
    """LN'(d): ∂L/∂v = (1/σ)(d - mean(d) - v̂ ⊙ mean(d ⊙ v̂)), means over the last dimension."""
    mean_d = d.mean(-1, keepdim=True)
    mean_dv = (d * v_hat).mean(-1, keepdim=True)
    return torch.sub(d, mean_d, out=out).addcmul_(v_hat, mean_dv, value=-1).mul_(rstd)


class LSTMFunction(torch.autograd.Function):
    """The whole LSTM sequence as one autograd node (see the module docstring for the maths).

    Inputs: xg (T, B, 4H), h0 and c0 (B, H), mask (T, B, 1) bool or None, then the parameters
    weight_hh (4H, H), bias_hh (4H,), weight_ci/cf/co (H,), weight_ln_hh (4H,), weight_ln_c (H,),
    bias_ln_c (H,); an option that is off passes None. Outputs ys (T, B, H), h_T, c_T (B, H).
    """

    @staticmethod
    def forward(
        ctx,
        xg: Tensor,
        h0: Tensor,
        c0: Tensor,
        mask: Tensor | None,
        weight_hh: Tensor,
        bias_hh: Tensor | None,
        weight_ci: Tensor | None,
        weight_cf: Tensor | None,
        weight_co: Tensor | None,
        weight_ln_hh: Tensor | None,
        weight_ln_c: Tensor | None,
        bias_ln_c: Tensor | None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        T, B, G = xg.shape
        H = G // 4
        peephole = weight_ci is not None
        layer_norm = weight_ln_hh is not None
        W_t = weight_hh.t()  # (H, 4H)

        # The bias b_hh enters every step unchanged: add it to all T input gates at once.
        xb = xg if bias_hh is None else xg + bias_hh  # (T, B, 4H)
        gates = xg.new_empty(T, B, G)  # (T, B, 4H) pre-activations, then i, f, g, o in place
        hs = xg.new_empty(T + 1, B, H)  # (T+1, B, H) carried h_0..h_T
        cs = xg.new_empty(T + 1, B, H)  # (T+1, B, H) carried c_0..c_T
        hs[0] = h0
        cs[0] = c0
        tanh_c = xg.new_empty(B, H)  # (B, H) scratch for tanh(c) (without layer_norm)
        if layer_norm:
            a_hh = xg.new_empty(T, B, G)  # (T, B, 4H) W_hh h_{t-1} before normalisation
            mu_hh = xg.new_empty(T, B, 1)
            rstd_hh = xg.new_empty(T, B, 1)
            mu_c = xg.new_empty(T, B, 1)
            rstd_c = xg.new_empty(T, B, 1)
        else:
            a_hh = mu_hh = rstd_hh = mu_c = rstd_c = None

        for t in range(T):
            h, c, z = hs[t], cs[t], gates[t]  # (B, H), (B, H), (B, 4H)
            # z = xg + b_hh + W_hh h: the step's one recurrent product, into the gate buffer
            if layer_norm:
                torch.mm(h, W_t, out=a_hh[t])
                n, mu, rstd = torch.native_layer_norm(a_hh[t], (G,), weight_ln_hh, None, LN_EPS)
                mu_hh[t] = mu
                rstd_hh[t] = rstd
                torch.add(xb[t], n, out=z)
            else:
                torch.addmm(xb[t], h, W_t, out=z)
            i, f, g, o = z.split(H, dim=-1)  # views into the gate buffer
            if peephole:
                i.addcmul_(weight_ci, c)
                f.addcmul_(weight_cf, c)
            z[:, : 2 * H].sigmoid_()  # i, f
            g.tanh_()
            # c' = f ⊙ c + i ⊙ g
            c_new = cs[t + 1]
            torch.mul(f, c, out=c_new)
            c_new.addcmul_(i, g)
            if peephole:
                o.addcmul_(weight_co, c_new)
            o.sigmoid_()
            # h' = o ⊙ tanh(ĉ)
            if layer_norm:
                c_hat, mu, rstd = torch.native_layer_norm(
                    c_new, (H,), weight_ln_c, bias_ln_c, LN_EPS
                )
                mu_c[t] = mu
                rstd_c[t] = rstd
                torch.tanh(c_hat, out=c_hat)
                torch.mul(o, c_hat, out=hs[t + 1])
            else:
                torch.tanh(c_new, out=tanh_c)
                torch.mul(o, tanh_c, out=hs[t + 1])
            if mask is not None:  # past a sequence's end: carry the state unchanged
                m = mask[t]  # (B, 1)
                torch.where(m, hs[t + 1], h, out=hs[t + 1])
                torch.where(m, c_new, c, out=c_new)

        if mask is None:
            ys = hs[1:].clone()  # (T, B, H)
        else:
            ys = hs[1:].masked_fill(~mask, 0)  # (T, B, H), zero past each sequence's end
        ctx.save_for_backward(
            gates, hs, cs, mask, weight_hh, weight_ci, weight_cf, weight_co,
            weight_ln_hh, weight_ln_c, bias_ln_c, a_hh, mu_hh, rstd_hh, mu_c, rstd_c,
        )  # fmt: skip
        return ys, hs[T].clone(), cs[T].clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, d_ys: Tensor, d_hT: Tensor, d_cT: Tensor):
        (
            gates, hs, cs, mask, weight_hh, weight_ci, weight_cf, weight_co,
            weight_ln_hh, weight_ln_c, bias_ln_c, a_hh, mu_hh, rstd_hh, mu_c, rstd_c,
        ) = ctx.saved_tensors  # fmt: skip
        needs = ctx.needs_input_grad
        T, B, G = gates.shape
        H = G // 4
        peephole = weight_ci is not None
        layer_norm = weight_ln_hh is not None

        # The local derivatives, which do not depend on the recursion: all T steps at once.
        c_prev_all, c_all = cs[:-1], cs[1:]  # (T, B, H) c_{t-1}, c_t
        i_all, f_all, g_all, o_all = gates.split(H, dim=-1)  # (T, B, H) each
        if layer_norm:
            c_norm = (c_all - mu_c) * rstd_c  # (T, B, H) LN(c_t)
            tanh_c = torch.addcmul(bias_ln_c, c_norm, weight_ln_c).tanh_()  # (T, B, H) tanh(ĉ)
            a_norm = (a_hh - mu_hh) * rstd_hh  # (T, B, 4H) LN(a_t)
            d_a_all = gates.new_empty(T, B, G)  # (T, B, 4H) ∂L/∂a_t
        else:
            c_norm = a_norm = None
            tanh_c = c_all.tanh()  # (T, B, H) tanh(ĉ) = tanh(c)
        # ∂z ← Δc and ∂z_o ← Δh factors: D = [g ⊙ σ'(i), c_{t-1} ⊙ σ'(f), i ⊙ tanh'(g),
        # tanh(ĉ) ⊙ σ'(o)] with σ' = σ(1 - σ), tanh' = 1 - tanh², so that per step
        # ∂L/∂z_{i,f,g} = ∂L/∂c ⊙ D_{i,f,g} and ∂L/∂z_o = Δh ⊙ D_o.
        D = gates * (1 - gates)  # (T, B, 4H) σ' in the i, f, o slots
        D_i, D_f, D_g, D_o = D.split(H, dim=-1)
        D_i.mul_(g_all)
        D_f.mul_(c_prev_all)
        torch.addcmul(i_all, i_all * g_all, g_all, value=-1, out=D_g)  # i ⊙ (1 - g²)
        D_o.mul_(tanh_c)
        D_c = D[..., : 3 * H].unflatten(-1, (3, H))  # (T, B, 3, H) the i, f, g factors
        # ∂ĉ ← Δh factor: o ⊙ tanh'(ĉ) (through the cell norm also times γ_c)
        Q = torch.addcmul(o_all, o_all * tanh_c, tanh_c, value=-1)  # (T, B, H)
        Q_gain = Q * weight_ln_c if layer_norm else Q  # (T, B, H)

        d_z_all = gates.new_empty(T, B, G)  # (T, B, 4H) ∂L/∂z_t = ∂L/∂xg_t
        if not layer_norm:
            d_a_all = d_z_all  # without layer_norm a_t enters z_t unchanged
        d_h_all = gates.new_empty(T, B, H)  # (T, B, H) Δh_t, for ∂L/∂ĉ_t after the loop
        past_end = None if mask is None else ~mask  # (T, B, 1)
        dh = d_hT.contiguous()  # δh_T (B, H)
        dc = d_cT.contiguous()  # δc_T (B, H)
        for t in range(T - 1, -1, -1):
            m = None if mask is None else mask[t]  # (B, 1) True: step t is in the sequence
            d_z = d_z_all[t]  # (B, 4H) to write into
            d_zo = d_z[:, 3 * H :]  # (B, H)
            # Δh = ∂L_t/∂h_t + δh_t, Δc = δc_t; zero at a masked step (h_t is not this step's)
            d_h = torch.add(dh, d_ys[t], out=d_h_all[t])
            d_c = dc
            if m is not None:
                d_h.masked_fill_(past_end[t], 0)
                d_c = dc.masked_fill(past_end[t], 0)
            # dL/do = Δh ⊙ tanh(ĉ);  dL/dz_o = dL/do ⊙ o(1 - o)
            torch.mul(d_h, D_o[t], out=d_zo)
            # dL/dc = Δc + dL/dĉ (through the cell norm: LN'(dL/dĉ ⊙ γ_c)) [+ dL/dz_o ⊙ w_co],
            # dL/dĉ = Δh ⊙ o ⊙ (1 - tanh²(ĉ))
            if layer_norm:
                d_c = d_c + _ln_backward(d_h * Q_gain[t], c_norm[t], rstd_c[t])
            else:
                d_c = torch.addcmul(d_c, d_h, Q[t])
            if peephole:
                d_c.addcmul_(d_zo, weight_co)
            # c_t = f ⊙ c_{t-1} + i ⊙ g:
            # dL/dz_i = (dL/dc ⊙ g) ⊙ i(1 - i), dL/dz_f = (dL/dc ⊙ c_{t-1}) ⊙ f(1 - f),
            # dL/dz_g = (dL/dc ⊙ i) ⊙ (1 - g²), all three in one broadcast product
            torch.mul(d_c.unsqueeze(1), D_c[t], out=d_z[:, : 3 * H].unflatten(-1, (3, H)))
            # δc_{t-1} = dL/dc ⊙ f [+ dL/dz_i ⊙ w_ci + dL/dz_f ⊙ w_cf]
            dc_prev = d_c.mul_(f_all[t])
            if peephole:
                dc_prev.addcmul_(d_z[:, :H], weight_ci).addcmul_(d_z[:, H : 2 * H], weight_cf)
            # dL/da = dL/dz through the gate norm: LN'(dL/dz ⊙ γ_hh)
            if layer_norm:
                _ln_backward(d_z * weight_ln_hh, a_norm[t], rstd_hh[t], out=d_a_all[t])
            # δh_{t-1} = W_hhᵀ dL/da: the step's one matrix product
            dh_prev = torch.mm(d_a_all[t], weight_hh)  # (B, H)
            # at a masked step the future's gradients pass through unchanged
            if m is not None:
                dh_prev = torch.where(m, dh_prev, dh)
                dc_prev = torch.where(m, dc_prev, dc)
            dh, dc = dh_prev, dc_prev
        # dL/dĉ = Δh ⊙ o ⊙ (1 - tanh²(ĉ)), for γ_c and β_c
        d_chat_all = d_h_all * Q if layer_norm else None  # (T, B, H)

        # Parameter gradients: sums over all T·B rows, W_hh as one matrix product.
        def rows(x: Tensor) -> Tensor:
            return x.reshape(T * B, x.shape[-1])  # (T·B, ·)

        grads: list[Tensor | None] = [None] * 12
        grads[0] = d_z_all if needs[0] else None  # xg
        grads[1] = dh if needs[1] else None  # h0
        grads[2] = dc if needs[2] else None  # c0
        if needs[4]:  # ∂L/∂W_hh = Σ ∂L/∂a_tᵀ h_{t-1}: (4H, T·B) @ (T·B, H)
            grads[4] = rows(d_a_all).t().mm(rows(hs[:-1]))
        if needs[5]:  # ∂L/∂b_hh = Σ ∂L/∂z_t
            grads[5] = rows(d_z_all).sum(0)
        if peephole:
            d_zi_all, d_zf_all, _, d_zo_all = d_z_all.split(H, dim=-1)
            if needs[6]:  # ∂L/∂w_ci = Σ ∂L/∂z_i ⊙ c_{t-1}
                grads[6] = rows(d_zi_all * c_prev_all).sum(0)
            if needs[7]:  # ∂L/∂w_cf = Σ ∂L/∂z_f ⊙ c_{t-1}
                grads[7] = rows(d_zf_all * c_prev_all).sum(0)
            if needs[8]:  # ∂L/∂w_co = Σ ∂L/∂z_o ⊙ c_t
                grads[8] = rows(d_zo_all * c_all).sum(0)
        if layer_norm:
            if needs[9]:  # ∂L/∂γ_hh = Σ ∂L/∂z_t ⊙ LN(a_t)
                grads[9] = rows(d_z_all * a_norm).sum(0)
            if needs[10]:  # ∂L/∂γ_c = Σ ∂L/∂ĉ_t ⊙ LN(c_t)
                grads[10] = rows(d_chat_all * c_norm).sum(0)
            if needs[11]:  # ∂L/∂β_c = Σ ∂L/∂ĉ_t
                grads[11] = rows(d_chat_all).sum(0)
        return tuple(grads)


def lstm_sequence(
    cell, xg: Tensor, state: tuple[Tensor, Tensor], mask: Tensor | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Run ``cell`` (an ``LSTMCell``) over a sequence through the hand-derived kernel.

    Args:
        cell: the LSTMCell whose recurrent parameters and options are used.
        xg: (T, B, 4H) the input gates ``cell.input_gates(xs)``.
        state: (h0, c0), each (B, H).
        mask: (T, B, 1) bool, True where step t lies within sequence b, or None.

    Returns ys (T, B, H), zero at masked steps, and the final (h_T, c_T), each sequence's state
    after its own last valid step; the same as ``Recurrent(cell, use_kernel=False)``.
    """
    h0, c0 = state
    H = cell.hidden_size
    if xg.dim() != 3 or xg.shape[-1] != 4 * H:
        raise ValueError(f"xg must be (T, B, {4 * H}), got shape {tuple(xg.shape)}")
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.bool()
    peephole = (cell.weight_ci, cell.weight_cf, cell.weight_co) if cell.peephole else (None,) * 3
    ln = (cell.weight_ln_hh, cell.weight_ln_c, cell.bias_ln_c) if cell.layer_norm else (None,) * 3
    ys, h, c = LSTMFunction.apply(xg, h0, c0, mask, cell.weight_hh, cell.bias_hh, *peephole, *ln)
    return ys, (h, c)
