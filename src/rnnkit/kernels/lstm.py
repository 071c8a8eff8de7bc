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
(T+1, B, H) each (h_0, c_0 first), tanh(ĉ_t) (T, B, H) as forward computed it, the mask, and
for layer_norm the normalised LN(a_t) (T, B, 4H) and LN(c_t) (T, B, H), each with its 1/σ
(T, B, 1). Backward thus recomputes no forward quantity.

Backend. The plain LSTM (no peephole, no layer_norm) over a batch without a mask computes
exactly torch.nn.LSTM's function, for which torch has a fused CPU op (``torch._VF.lstm``); the
"lstm" switch of ``rnnkit.kernels.backends`` chooses which of the two runs it (``use_fused``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from rnnkit.cells.lstm import LN_EPS, LSTMCell
from rnnkit.kernels.backends import OPTIONS, get_backend, set_backend
from rnnkit.kernels.dispatch import origin, save_with_origin, second_order
from rnnkit.kernels.fused import step_ops
from rnnkit.kernels.onednn import StepProduct
from rnnkit.kernels.registry import register_kernel

BACKENDS = OPTIONS["lstm"]
"""The values of the "lstm" switch of ``rnnkit.kernels.backends``."""


def set_lstm_backend(name: str) -> set_backend:
    """``set_backend("lstm", name)`` (``rnnkit.kernels.backends``), under its former name."""
    return set_backend("lstm", name)


def __getattr__(name: str):
    if name == "BACKEND":  # the former module attribute: the "lstm" switch's value
        return get_backend("lstm")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def use_fused(cell: LSTMCell, xs: Tensor, mask: Tensor | None) -> bool:
    """Whether the LSTM kernel runs torch's fused op for ``cell`` over ``xs`` rather than the
    hand-derived recursion (the "lstm" backend switch decides).

    It applies to the plain cell (no peephole, no layer_norm) without a mask and with T ≥ 1.
    "auto" takes it where torch's op is oneDNN's fused LSTM (float32 on the CPU, oneDNN enabled)
    and T ≥ 2: at T = 1 oneDNN's per-call set-up costs more than the step, and in float64, or
    with oneDNN off, torch's op is a per-step composite under autograd, slower than the
    hand-derived kernel.
    """
    backend = get_backend("lstm")
    if backend == "rnnkit" or mask is not None or cell.peephole or cell.layer_norm:
        return False
    if backend == "torch":
        return xs.shape[0] > 0  # torch's op rejects empty sequences
    return (
        xs.shape[0] > 1
        and xs.dtype == torch.float32
        and xs.device.type == "cpu"
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def lstm_sequence_fused(
    cell: LSTMCell, xs: Tensor, state: tuple[Tensor, Tensor]
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Run the plain ``cell`` over xs (T, B, I) through torch's fused op (one layer, one
    direction, time-major), with the cell's own parameters; torch's autograd gives the gradients.

    Returns ys (T, B, H) and the final (h_T, c_T); the same function as ``lstm_sequence``
    without a mask (the input projection is inside torch's op).
    """
    h0, c0 = state
    params = [cell.weight_ih, cell.weight_hh]
    if cell.bias_ih is not None:
        params += [cell.bias_ih, cell.bias_hh]
    hx = (h0.unsqueeze(0), c0.unsqueeze(0))
    train = torch.is_grad_enabled()  # keeps oneDNN's workspace for backward
    ys, h, c = torch._VF.lstm(xs, hx, params, len(params) == 4, 1, 0.0, train, False, False)
    return ys, (h[0], c[0])


def _normalise(v: Tensor, out: Tensor, rstd: Tensor, mean: Tensor) -> Tensor:
    """LN(v) = (v - μ)/σ over the last dimension (no gain), written into ``out``, 1/σ into
    ``rstd`` (μ into ``mean``, a scratch); ``F.layer_norm`` without gain or bias."""
    torch.ops.aten.native_layer_norm.out(
        v, v.shape[-1:], None, None, LN_EPS, out0=out, out1=mean, out2=rstd
    )
    return out


def _ln_backward(d: Tensor, v_hat: Tensor, rstd: Tensor, out: Tensor | None = None) -> Tensor:
    """LN'(d): ∂L/∂v = (1/σ)(d - mean(d) - v̂ ⊙ mean(d ⊙ v̂)), means over the last dimension."""
    mean_d = d.mean(-1, keepdim=True)
    mean_dv = (d * v_hat).mean(-1, keepdim=True)
    return torch.sub(d, mean_d, out=out).addcmul_(v_hat, mean_dv, value=-1).mul_(rstd)


class LSTMGrads(NamedTuple):
    """The gradients of ``LSTMBPTT``'s inputs, by input name (None: not needed, or no input)."""

    xg: Tensor | None = None
    h0: Tensor | None = None
    c0: Tensor | None = None
    mask: None = None
    weight_hh: Tensor | None = None
    bias_hh: Tensor | None = None
    weight_ci: Tensor | None = None
    weight_cf: Tensor | None = None
    weight_co: Tensor | None = None
    weight_ln_hh: Tensor | None = None
    weight_ln_c: Tensor | None = None
    bias_ln_c: Tensor | None = None


class LSTMBPTT(torch.autograd.Function):
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
        *origin_args,  # for second derivatives: see rnnkit.kernels.dispatch
    ) -> tuple[Tensor, Tensor, Tensor]:
        T, B, G = xg.shape
        H = G // 4
        peephole = weight_ci is not None
        layer_norm = weight_ln_hh is not None
        product = StepProduct(weight_hh, B)  # h ↦ W_hh h

        # The gate buffer starts as xg + b_hh (b_hh enters every step unchanged: all T at once);
        # each step adds its recurrent product in place, then turns z into i, f, g, o in place.
        gates = xg.new_empty(T, B, G)  # (T, B, 4H) pre-activations, then i, f, g, o
        if bias_hh is None:
            gates.copy_(xg)
        else:
            torch.add(xg, bias_hh, out=gates)
        hs = xg.new_empty(T + 1, B, H)  # (T+1, B, H) carried h_0..h_T
        cs = xg.new_empty(T + 1, B, H)  # (T+1, B, H) carried c_0..c_T
        tanh_cs = xg.new_empty(T, B, H)  # (T, B, H) tanh(ĉ_t), kept for backward
        hs[0] = h0
        cs[0] = c0
        if layer_norm:  # kept for backward: the normalised values and their 1/σ
            a = xg.new_empty(B, G)  # (B, 4H) scratch for the raw product W_hh h_{t-1}
            mu = xg.new_empty(B, 1)  # (B, 1) scratch for a mean
            a_norm = xg.new_empty(T, B, G)  # (T, B, 4H) LN(a_t)
            rstd_hh = xg.new_empty(T, B, 1)
            c_norm = xg.new_empty(T, B, H)  # (T, B, H) LN(c_t)
            rstd_c = xg.new_empty(T, B, 1)
        else:
            a_norm = rstd_hh = c_norm = rstd_c = None
        h_steps, c_steps = hs.unbind(0), cs.unbind(0)  # per-step views (B, ·), taken once
        z_steps, tanh_steps = gates.unbind(0), tanh_cs.unbind(0)

        fused, peep = step_ops(xg), (weight_ci, weight_cf, weight_co)  # rnnkit.kernels.fused
        for t in range(T):
            h, c, z = h_steps[t], c_steps[t], z_steps[t]  # (B, H), (B, H), (B, 4H)
            if fused is not None:  # the product, then the element-wise work in one compiled call
                if layer_norm:  # a = W_hh h; the compiled step adds LN(a) ⊙ γ_hh to z
                    product.into(h, a)
                else:
                    product.into(h, z, add=z)
                ln = layer_norm and (a, a_norm[t], rstd_hh[t], weight_ln_hh, c_norm[t], rstd_c[t],
                                     weight_ln_c, bias_ln_c)  # fmt: skip
                fused.lstm_forward(z, c, h, c_steps[t + 1], h_steps[t + 1], tanh_steps[t], peep, ln,
                                   LN_EPS, None if mask is None else mask[t])  # fmt: skip
                continue
            # z = xg + b_hh + W_hh h: the step's one recurrent product, into the gate buffer
            if layer_norm:  # z += LN(a) ⊙ γ_hh
                product.into(h, a)
                z.addcmul_(_normalise(a, a_norm[t], rstd_hh[t], mu), weight_ln_hh)
            else:
                product.into(h, z, add=z)
            i, f, g, o = z.split(H, dim=-1)  # views into the gate buffer
            if peephole:
                i.addcmul_(weight_ci, c)
                f.addcmul_(weight_cf, c)
            z[:, : 2 * H].sigmoid_()  # i, f
            g.tanh_()
            # c' = f ⊙ c + i ⊙ g
            c_new, h_new, tanh_c = c_steps[t + 1], h_steps[t + 1], tanh_steps[t]
            torch.mul(f, c, out=c_new)
            c_new.addcmul_(i, g)
            if peephole:
                o.addcmul_(weight_co, c_new)
            o.sigmoid_()
            # h' = o ⊙ tanh(ĉ)
            if layer_norm:  # ĉ = LN(c') ⊙ γ_c + β_c
                c_hat = _normalise(c_new, c_norm[t], rstd_c[t], mu)
                torch.addcmul(bias_ln_c, c_hat, weight_ln_c, out=tanh_c).tanh_()
            else:
                torch.tanh(c_new, out=tanh_c)
            torch.mul(o, tanh_c, out=h_new)
            if mask is not None:  # past a sequence's end: carry the state unchanged
                m = mask[t]  # (B, 1)
                torch.where(m, h_new, h, out=h_new)
                torch.where(m, c_new, c, out=c_new)

        if mask is None:
            ys = hs[1:].clone()  # (T, B, H)
        else:
            ys = hs[1:].masked_fill(~mask, 0)  # (T, B, H), zero past each sequence's end
        activations = (gates, hs, cs, tanh_cs, mask)
        params = (weight_hh, weight_ci, weight_cf, weight_co, weight_ln_hh, weight_ln_c, bias_ln_c)
        ln_stats = (a_norm, rstd_hh, c_norm, rstd_c)  # all None without layer_norm
        save_with_origin(ctx, origin_args, *activations, *params, *ln_stats)  # 16 tensors
        return ys, hs[T].clone(), cs[T].clone()

    @staticmethod
    def backward(ctx, d_ys: Tensor, d_hT: Tensor, d_cT: Tensor):
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            n_inputs = len(LSTMGrads._fields)
            return second_order(ctx, n_inputs, ctx.saved_tensors[16:], (d_ys, d_hT, d_cT))
        saved = ctx.saved_tensors
        gates, hs, cs, tanh_c, mask = saved[:5]
        params = saved[5:12]  # W_hh, w_ci, w_cf, w_co, γ_hh, γ_c, β_c (None for an option off)
        weight_hh, weight_ci, weight_cf, weight_co, weight_ln_hh, weight_ln_c, bias_ln_c = params
        a_norm, rstd_hh, c_norm, rstd_c = saved[12:16]
        needs = LSTMGrads(*ctx.needs_input_grad[: len(LSTMGrads._fields)])
        T, B, G = gates.shape
        H = G // 4
        peephole = weight_ci is not None
        layer_norm = weight_ln_hh is not None

        # The local derivatives, which do not depend on the recursion: all T steps at once.
        c_prev_all, c_all = cs[:-1], cs[1:]  # (T, B, H) c_{t-1}, c_t
        i_all, f_all, g_all, o_all = gates.split(H, dim=-1)  # (T, B, H) each
        # tanh_c (T, B, H) is tanh(ĉ_t), and c_norm, a_norm are LN(c_t), LN(a_t), as forward
        # computed them (at a masked step those of the discarded update, which Δh = Δc = 0 multiply
        # away). Factors: D = [g ⊙ σ'(i), c_{t-1} ⊙ σ'(f), i ⊙ tanh'(g), tanh(ĉ) ⊙ σ'(o)] (σ' = σ(1
        # - σ), tanh' = 1 - tanh²), so that per step ∂L/∂z_{i,f,g} = ∂L/∂c ⊙ D_{i,f,g} and ∂L/∂z_o =
        # Δh ⊙ D_o (the loop turns D into ∂L/∂z in place); Q = o ⊙ tanh'(ĉ), times γ_c through the
        # cell norm (Q_gain). In one compiled pass where it builds (rnnkit.kernels.fused).
        fused = step_ops(gates)
        if fused is not None and all(t.is_contiguous() for t in (gates, c_prev_all, tanh_c)):
            D, Q, Q_gain = fused.lstm_factors(gates, c_prev_all, tanh_c, weight_ln_c)
        else:
            D = torch.rsub(gates, 1).mul_(gates)  # (T, B, 4H) σ' = σ(1 - σ) in i, f, o slots
            D_i, D_f, D_g, D_o = D.split(H, dim=-1)
            D_i.mul_(g_all)
            D_f.mul_(c_prev_all)
            torch.addcmul(i_all, i_all * g_all, g_all, value=-1, out=D_g)  # i ⊙ (1 - g²)
            D_o.mul_(tanh_c)
            Q = torch.addcmul(o_all, o_all * tanh_c, tanh_c, value=-1)  # (T, B, H)
            Q_gain = Q * weight_ln_c if layer_norm else Q  # (T, B, H)
        D_c = D[..., : 3 * H].unflatten(-1, (3, H))  # (T, B, 3, H) the i, f, g factors

        d_z_all = D  # (T, B, 4H) ∂L/∂z_t = ∂L/∂xg_t, once the loop has passed step t
        # ∂L/∂a_t (T, B, 4H); without layer_norm a_t enters z_t unchanged
        d_a_all = gates.new_empty(T, B, G) if layer_norm else d_z_all
        d_h_all = gates.new_empty(T, B, H)  # (T, B, H) Δh_t, for ∂L/∂ĉ_t after the loop
        past_end = None if mask is None else ~mask  # (T, B, 1)
        dh = d_hT.contiguous()  # δh_T (B, H)
        dc = d_cT.contiguous()  # δc_T (B, H)
        peep = (weight_ci, weight_cf, weight_co)
        back = StepProduct(weight_hh.t().contiguous(), gates.shape[1])  # ∂L/∂a ↦ ∂L/∂a W_hh
        if fused is not None:  # its own buffers, updated in place
            dh, dc = (d.clone(memory_format=torch.contiguous_format) for d in (d_hT, d_cT))
            carry = torch.empty_like(dh)
        for t in range(T - 1, -1, -1):
            m = None if mask is None else mask[t]  # (B, 1) True: step t is in the sequence
            if fused is not None:  # the element-wise work in one compiled call, then the product
                ln = layer_norm and (a_norm[t], rstd_hh[t], weight_ln_hh, c_norm[t], rstd_c[t])
                fused.lstm_backward(dh, d_ys[t], dc, d_h_all[t], d_z_all[t], Q_gain[t], gates[t],
                                    d_a_all[t], carry, peep, ln, m)  # fmt: skip
                back.into(d_a_all[t], dh, add=carry)  # δh_{t-1} = carry + ∂L/∂a W
                continue
            d_z = d_z_all[t]  # (B, 4H) D_t, turned into ∂L/∂z_t in place
            d_zo = d_z[:, 3 * H :]  # (B, H)
            # Δh = ∂L_t/∂h_t + δh_t, Δc = δc_t; zero at a masked step (h_t is not this step's)
            d_h = torch.add(dh, d_ys[t], out=d_h_all[t])
            d_c = dc
            if m is not None:
                d_h.masked_fill_(past_end[t], 0)
                d_c = dc.masked_fill(past_end[t], 0)
            # dL/do = Δh ⊙ tanh(ĉ);  dL/dz_o = dL/do ⊙ o(1 - o)
            d_zo.mul_(d_h)  # D_o ⊙ Δh
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
            D_c[t].mul_(d_c.unsqueeze(1))  # D_{i,f,g} ⊙ dL/dc
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

        grad = {}
        if needs.xg:  # ∂L/∂xg_t = ∂L/∂z_t
            grad["xg"] = d_z_all
        if needs.h0:  # ∂L/∂h_0 = δh_0
            grad["h0"] = dh
        if needs.c0:  # ∂L/∂c_0 = δc_0
            grad["c0"] = dc
        if needs.weight_hh:  # ∂L/∂W_hh = Σ ∂L/∂a_tᵀ h_{t-1}: (4H, T·B) @ (T·B, H)
            grad["weight_hh"] = rows(d_a_all).t().mm(rows(hs[:-1]))
        if needs.bias_hh:  # ∂L/∂b_hh = Σ ∂L/∂z_t
            grad["bias_hh"] = rows(d_z_all).sum(0)
        if peephole:
            d_zi_all, d_zf_all, _, d_zo_all = d_z_all.split(H, dim=-1)
            if needs.weight_ci:  # ∂L/∂w_ci = Σ ∂L/∂z_i ⊙ c_{t-1}
                grad["weight_ci"] = rows(d_zi_all * c_prev_all).sum(0)
            if needs.weight_cf:  # ∂L/∂w_cf = Σ ∂L/∂z_f ⊙ c_{t-1}
                grad["weight_cf"] = rows(d_zf_all * c_prev_all).sum(0)
            if needs.weight_co:  # ∂L/∂w_co = Σ ∂L/∂z_o ⊙ c_t
                grad["weight_co"] = rows(d_zo_all * c_all).sum(0)
        if layer_norm:
            if needs.weight_ln_hh:  # ∂L/∂γ_hh = Σ ∂L/∂z_t ⊙ LN(a_t)
                grad["weight_ln_hh"] = rows(d_z_all * a_norm).sum(0)
            if needs.weight_ln_c:  # ∂L/∂γ_c = Σ ∂L/∂ĉ_t ⊙ LN(c_t)
                grad["weight_ln_c"] = rows(d_chat_all * c_norm).sum(0)
            if needs.bias_ln_c:  # ∂L/∂β_c = Σ ∂L/∂ĉ_t
                grad["bias_ln_c"] = rows(d_chat_all).sum(0)
        return (*LSTMGrads(**grad), *ctx.no_origin_grads)


def lstm_sequence(
    cell: LSTMCell,
    xg: Tensor,
    state: tuple[Tensor, Tensor],
    mask: Tensor | None,
    xs: Tensor | None = None,
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """Run ``cell`` (an ``LSTMCell``) over a sequence through the hand-derived kernel.

    Args:
        cell: the LSTMCell whose recurrent parameters and options are used.
        xg: (T, B, 4H) the input gates ``cell.input_gates(xs)``.
        state: (h0, c0), each (B, H).
        mask: (T, B, 1) bool, True where step t lies within sequence b, or None.
        xs: (T, B, I) the sequence xg was projected from; with it, second derivatives are
            available (``rnnkit.kernels.dispatch``).

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
    tail = () if xs is None else origin(cell, xs, state, mask)
    ys, h, c = LSTMBPTT.apply(xg, h0, c0, mask, cell.weight_hh, cell.bias_hh, *peephole, *ln, *tail)
    return ys, (h, c)


LSTMFunction = LSTMBPTT
"""The old name of ``LSTMBPTT``."""


@register_kernel(LSTMCell)
def run_lstm(
    cell: LSTMCell, xs: Tensor, state: tuple[Tensor, Tensor], mask: Tensor | None
) -> tuple[Tensor, tuple[Tensor, Tensor]]:
    """``cell`` over xs (T, B, I) from ``state`` (h_0, c_0): the kernel of ``LSTMCell``. The
    hand-derived recursion, or, for the plain cell without a mask, torch's fused LSTM op where
    the "lstm" backend says so (``use_fused``); both compute the same function."""
    if use_fused(cell, xs, mask):  # before the input projection: torch's op does its own
        return lstm_sequence_fused(cell, xs, state)
    return lstm_sequence(cell, cell.input_gates(xs), state, mask, xs)
