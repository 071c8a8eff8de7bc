r"""The teacher-forced attention decoder as one Function: the forward over all T target steps and
backpropagation through time by hand, through the cells, the attention softmax and input feeding.

With Bahdanau attention, or Luong attention with input feeding, every decoder step reads the
previous step's output, so the decoder cannot run layer by layer as a sequence
(``rnnkit.seq2seq.Decoder.sequence``); stepped under autograd it costs a graph of small ops per
step and separate weight gradients per step. This kernel keeps the step loop in the forward,
without a graph, and does every weight gradient as one matrix product over all T·B rows; with
Bahdanau attention and a source no longer than the target (S ≤ T), the context's share of the
first layer's input, W_x c_t, is a weighted sum of the memory projected once (m_x): fewer rows
to multiply by W_x, and no step does.

Notation. Layers l = 1..L of GRU or LSTM cells (``rnnkit.cells``, gate order r,z,n / i,f,g,o),
states s^l_t (h^l_t, and c^l_t for the LSTM), s_t = h^L_t the top one. Memory m (B, S, M), keys
k (B, S, ·) (``attention.keys(m)``), source mask (B, S). The layer-1 input projection of the
embedded targets, xg_t = W_ih[:, :E] E y_{t-1} + b_ih (T, B, G), arrives precomputed; W_x =
W_ih[:, E:] is layer 1's weight for the rest of its input, the context (Bahdanau) or the fed-back
h̃_{t-1} (Luong). Layers l > 1 take d^l_t ⊙ h^{l-1}_t, d^l a dropout mask (scaled by 1/(1-p)).

Forward, step t (masked softmax: -∞ at padding, so weight exactly 0 there):

    Bahdanau:  a_t = tanh(k + W_q s_{t-1})   e_t = a_t v   α_t = softmax(e_t)   c_t = α_t m
               x^1_t = xg_t + W_x c_t  (= xg_t + α_t m_x,  m_x = m W_xᵀ (B, S, G) once, if S ≤ T)
    Luong:     x^1_t = xg_t + W_x h̃_{t-1}     (h̃_0 = the state's ``feed``, zeros)
    cells:     s^l_t = cell^l(x^l_t, s^l_{t-1}),  x^l_t = W_ih^l (d^l_t ⊙ h^{l-1}_t) + b_ih^l
    Luong:     e_t = k s_t   α_t = softmax(e_t)   c_t = α_t m   h̃_t = tanh(W_c [s_t; c_t] + b_c)

Outputs: s (T, B, H), c (T, B, M), α (T, B, S) and, for Luong, h̃ (T, B, H): what the step loop
hands ``Decoder.output`` (whose W_o h̃ and softmax stay outside, one product over all steps).

Backward, from t = T down to 1, with δ the gradients from later steps (δ = 0 after step T):
the softmax's backward is ∂L/∂e = α ⊙ (∂L/∂α - Σ_s α_s ∂L/∂α_s), which sums to 0 over s.

    Luong:     ∂L/∂z_t = (∂L/∂h̃_t + δh̃_t) ⊙ (1 - h̃_t²)           (z_t = W_c [s_t; c_t] + b_c)
               ∂L/∂c_t = ∂L_t/∂c_t + ∂L/∂z_t W_c[:, H:]
               ∂L/∂α_t = ∂L_t/∂α_t + m ∂L/∂c_t;    ∂L/∂e_t from it
               g^L = ∂L_t/∂s_t + δs_t + ∂L/∂z_t W_c[:, :H] + ∂L/∂e_t k
    Bahdanau:  g^L = ∂L_t/∂s_t + δs_t
    cells, l = L..1: the cell's backward (``rnnkit.kernels.gru`` / ``lstm``) of g^l gives
               ∂L/∂x^l_t and δs^l_{t-1};  g^{l-1} = d^l_t ⊙ (∂L/∂x^l_t W_ih^l) + δh^{l-1}_t
    Luong:     δh̃_{t-1} = ∂L/∂x^1_t W_x
    Bahdanau:  ∂L/∂c_t = ∂L_t/∂c_t + ∂L/∂x^1_t W_x
               ∂L/∂α_t = ∂L_t/∂α_t + m ∂L/∂c_t  (= ∂L_t/∂α_t + m ∂L_t/∂c_t + m_x ∂L/∂x^1_t)
               ∂L/∂e_t from it
               ∂L/∂u_t = Σ_s ∂L/∂e_ts v ⊙ (1 - a_ts²) = -v ⊙ Σ_s ∂L/∂e_ts a_ts²   (u = W_q s_{t-1})
               δs_{t-1} += ∂L/∂u_t W_q

and then, as sums over all steps (one matrix product each):

    ∂L/∂xg = ∂L/∂x^1
    ∂W_ih^l = Σ_t ∂L/∂x^l_tᵀ (d^l_t ⊙ h^{l-1}_t)      ∂W_hh^l, ∂b^l: as in the cell kernels
    Luong:     ∂m = Σ_t α_tᵀ ∂L/∂c_t (per batch row)      ∂W_x = Σ_t ∂L/∂x^1_tᵀ h̃_{t-1}
               ∂k = Σ_t ∂L/∂e_tᵀ s_t     ∂W_c = Σ_t ∂L/∂z_tᵀ [s_t; c_t]     ∂b_c = Σ_t ∂L/∂z_t
    Bahdanau:  ∂m = Σ_t α_tᵀ ∂L/∂c_t      ∂W_x = Σ_t ∂L/∂x^1_tᵀ c_t;   with m_x (S ≤ T):
               ∂m_x = Σ_t α_tᵀ ∂L/∂x^1_t  ∂m = Σ_t α_tᵀ ∂L_t/∂c_t + ∂m_x W_x  ∂W_x = ∂m_xᵀ m
               ∂k = v ⊙ Σ_t ∂L/∂e_t ⊙ (1 - a_t²)      ∂v = Σ_{t,s} ∂L/∂e_ts a_ts
               ∂W_q = Σ_t ∂L/∂u_tᵀ s_{t-1}

The initial states and h̃_0 get δs^l_0 and δh̃_0. Second derivatives (``create_graph``) are not
derived: the backward raises; the step loop (``Decoder.use_kernel = False``) has them.

Covered (``applies``): cells exactly ``GRUCell`` (reset_after, with biases) and ``LSTMCell``
(no peephole, no layer_norm, with biases), any number of layers, ``AdditiveAttention``,
``LuongDot`` and ``LuongGeneral`` (with input feeding; without it ``Decoder.sequence`` runs),
dropout an ``nn.Dropout``. Anything else (a gated attention, a user's cell) runs the step loop.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor


class Layer(NamedTuple):
    """One decoder layer's tensors as the kernel takes them (None where they do not apply)."""

    h0: Tensor  # (B, H)
    c0: Tensor | None  # (B, H), LSTM only
    weight_ih: Tensor | None  # (G, H), layers above the first
    bias_ih: Tensor | None  # (G,), layers above the first
    weight_hh: Tensor  # (G, H)
    bias_hh: Tensor  # (G,)
    drop: Tensor | None  # (T, B, H) the dropout mask on its input, layers above the first


N_LAYER = len(Layer._fields)


def _masked_softmax_(e: Tensor, pad: Tensor, empty: bool, out: Tensor) -> Tensor:
    """softmax of scores e (B, S) over the real positions into ``out``; 0 at padding (``pad``
    True), all 0 in a row without a real position (``empty``: whether there is such a row)."""
    e.masked_fill_(pad, -torch.inf)
    out.copy_(torch.softmax(e, dim=-1))
    if empty:
        out.masked_fill_(pad, 0.0)
    return out


def _softmax_backward(alpha: Tensor, d_alpha: Tensor) -> Tensor:
    """∂L/∂e = α ⊙ (∂L/∂α - Σ_s α_s ∂L/∂α_s), rows (B, S)."""
    return alpha * (d_alpha - (alpha * d_alpha).sum(-1, keepdim=True))


class AttentionDecoderBPTT(torch.autograd.Function):
    """(kind, cell, pad, xg, memory, keys, feed0, weight_x, weight_a, vector_a, *layers) ->
    (s, c, α) for ``kind`` "bahdanau", (s, c, α, h̃) for "luong"; see the module docstring.

    weight_a, vector_a: W_q (A, Q) and v (1, A) for Bahdanau, W_c (H, H + M) and b_c (H,) for
    Luong. ``layers``: ``Layer``'s fields for each layer in turn, flat. pad (B, S) bool, True
    at padding. feed0 (B, H): h̃_0 (Luong), None for Bahdanau.
    """

    @staticmethod
    def forward(
        ctx: Any,
        kind: str,
        cell: str,
        pad: Tensor,
        xg: Tensor,
        memory: Tensor,
        keys: Tensor,
        feed0: Tensor | None,
        weight_x: Tensor,
        weight_a: Tensor,
        vector_a: Tensor,
        *flat: Tensor | None,
    ) -> tuple[Tensor, ...]:
        layers = [Layer(*flat[i : i + N_LAYER]) for i in range(0, len(flat), N_LAYER)]
        L, lstm, bahdanau = len(layers), cell == "lstm", kind == "bahdanau"
        T, B, G = xg.shape
        H = layers[0].h0.shape[-1]
        S, M = memory.shape[1], memory.shape[2]
        empty = bool((~pad).sum(-1).eq(0).any())
        new = xg.new_empty
        hs = [new(T + 1, B, H) for _ in layers]  # (T+1, B, H) h^l_0..h^l_T
        cs = [new(T + 1, B, H) if lstm else None for _ in layers]  # LSTM cells c^l_0..c^l_T
        gates = [new(T, B, G) for _ in layers]  # GRU [r, z, p_n]; LSTM [i, f, g, o] activated
        extra = [new(T, B, H) for _ in layers]  # GRU n; LSTM tanh(c_t)
        inputs = [None] + [new(T, B, H) for _ in layers[1:]]  # d^l ⊙ h^{l-1}, l > 1
        for l, layer in enumerate(layers):
            hs[l][0] = layer.h0
            if lstm:
                cs[l][0] = layer.c0
        alpha = new(T, B, S)
        context = new(T, B, M)
        e = new(B, S)
        x = new(B, G)
        W_x_t = weight_x.t()
        if bahdanau:
            A = weight_a.shape[0]
            # a_t = tanh(k + W_q s_{t-1}), (B, S, A) each: one tensor a step, not one (T, B, S, A)
            # buffer, which (tens of MB) the allocator would map afresh, page by page, every call
            a = []
            u = new(B, A)
            W_q_t, v = weight_a.t(), vector_a.reshape(A, 1)
            keys2 = keys * 2
            # W_x c_t = Σ_s α_ts (W_x m_s): the memory projected once (B·S rows) where that is
            # fewer rows than the steps' T·B, then a (B, 1, S) product a step
            project = S <= T
            memory_x = torch.matmul(memory, W_x_t) if project else None  # (B, S, G)
        else:
            feeds = new(T + 1, B, H)  # h̃_0..h̃_T
            feeds[0] = feed0
            W_cs_t, W_cc_t = weight_a[:, :H].t(), weight_a[:, H:].t()
            # (B, Q, S): a (B, 1, Q) x (B, Q, S) product a step, faster than (B, S, Q) x (B, Q, 1)
            keys_t = keys.transpose(1, 2)
        for t in range(T):
            if bahdanau:
                torch.mm(hs[-1][t], W_q_t, out=u)  # u = W_q s_{t-1}
                # tanh(x) = 2σ(2x) - 1: torch's CPU sigmoid is several times faster than its tanh
                a_t = torch.add(keys2, u.unsqueeze(1), alpha=2).sigmoid_()
                a.append(a_t.mul_(2).sub_(1))
                torch.mm(a[t].view(B * S, A), v, out=e.view(B * S, 1))  # e = a v
                _masked_softmax_(e, pad, empty, alpha[t])
                if project:  # x^1 = xg + W_x c = xg + α (W_x m)
                    torch.baddbmm(
                        xg[t].unsqueeze(1), alpha[t].unsqueeze(1), memory_x, out=x.unsqueeze(1)
                    )
                else:
                    torch.bmm(alpha[t].unsqueeze(1), memory, out=context[t].unsqueeze(1))
                    torch.addmm(xg[t], context[t], W_x_t, out=x)  # x^1 = xg + W_x c
            else:
                torch.addmm(xg[t], feeds[t], W_x_t, out=x)  # x^1 = xg + W_x h̃_{t-1}
            for l, layer in enumerate(layers):
                if l > 0:
                    x_in = inputs[l][t]
                    h_below = hs[l - 1][t + 1]
                    if layer.drop is None:
                        x_in.copy_(h_below)
                    else:
                        torch.mul(h_below, layer.drop[t], out=x_in)
                    torch.addmm(layer.bias_ih, x_in, layer.weight_ih.t(), out=x)
                P = gates[l][t]
                torch.addmm(layer.bias_hh, hs[l][t], layer.weight_hh.t(), out=P)  # W_hh h + b_hh
                if lstm:
                    P.add_(x)
                    P[:, : 2 * H].sigmoid_()  # i, f
                    P[:, 2 * H : 3 * H].tanh_()  # g
                    P[:, 3 * H :].sigmoid_()  # o
                    i, f, g, o = P.split(H, dim=1)
                    c_new = torch.mul(f, cs[l][t], out=cs[l][t + 1]).addcmul_(i, g)
                    tc = torch.tanh(c_new, out=extra[l][t])
                    torch.mul(o, tc, out=hs[l][t + 1])  # h' = o ⊙ tanh(c')
                else:
                    P[:, : 2 * H].add_(x[:, : 2 * H]).sigmoid_()  # r, z in place of p_r, p_z
                    r, z, p_n = P.split(H, dim=1)
                    n = torch.addcmul(x[:, 2 * H :], r, p_n, out=extra[l][t]).tanh_()
                    torch.lerp(n, hs[l][t], z, out=hs[l][t + 1])  # h' = n + z ⊙ (h - n)
            if not bahdanau:
                s = hs[-1][t + 1]
                torch.bmm(s.unsqueeze(1), keys_t, out=e.unsqueeze(1))  # e = k s_t
                _masked_softmax_(e, pad, empty, alpha[t])
                torch.bmm(alpha[t].unsqueeze(1), memory, out=context[t].unsqueeze(1))
                f_new = torch.addmm(vector_a, s, W_cs_t, out=feeds[t + 1])
                f_new.addmm_(context[t], W_cc_t).tanh_()  # h̃ = tanh(W_c [s; c] + b_c)
        if bahdanau and project:  # c_t = α_t m, every step in one product
            torch.bmm(alpha.transpose(0, 1), memory, out=context.transpose(0, 1))
        ctx.kind, ctx.lstm, ctx.n_layers = kind, lstm, L
        ctx.project = bahdanau and project
        saved = [memory, keys, weight_x, weight_a, vector_a, alpha, context]
        saved += [None if bahdanau else feeds]
        for l, layer in enumerate(layers):
            saved += [hs[l], cs[l], gates[l], extra[l], inputs[l]]
            saved += [layer.weight_ih, layer.weight_hh, layer.drop]
        if bahdanau:
            saved += a
        ctx.save_for_backward(*saved)
        outputs = (hs[-1][1:], context, alpha)
        return outputs if bahdanau else (*outputs, feeds[1:])

    @staticmethod
    def backward(ctx: Any, *grads: Tensor | None) -> tuple[Tensor | None, ...]:
        if torch.is_grad_enabled():
            raise RuntimeError(
                "second derivatives through the attention decoder kernel are not derived: set "
                "Decoder.use_kernel = False to step the decoder under autograd"
            )
        L, lstm, bahdanau = ctx.n_layers, ctx.lstm, ctx.kind == "bahdanau"
        memory, keys, weight_x, weight_a, vector_a, alpha, context, feeds = ctx.saved_tensors[:8]
        rest, a = ctx.saved_tensors[8 : 8 + 8 * L], ctx.saved_tensors[8 + 8 * L :]
        hs, cs, gates, extra, inputs, W_ih, W_hh, drops = (list(rest[i::8]) for i in range(8))
        T, B, S = alpha.shape
        H, M, G = hs[0].shape[-1], memory.shape[-1], gates[0].shape[-1]
        new = alpha.new_empty
        outs = (hs[-1][1:], context, alpha)
        d_s, d_c, d_alpha = (
            torch.zeros_like(o) if g is None else g for g, o in zip(grads[:3], outs, strict=True)
        )
        if not bahdanau:
            d_feed = torch.zeros_like(hs[-1][1:]) if grads[3] is None else grads[3]

        # the factors of each cell's backward that do not depend on the incoming gradient
        factors = []
        for l in range(L):
            if lstm:
                i, f, g, o = gates[l].split(H, dim=-1)
                tc = extra[l]
                # [∂z_i/∂c', ∂z_f/∂c', ∂z_g/∂c', ∂z_o/∂h', ∂c'/∂h'] per unit gradient
                factors.append(
                    torch.cat(
                        [
                            g * i * (1 - i),
                            cs[l][:-1] * f * (1 - f),
                            i * (1 - g * g),
                            tc * o * (1 - o),
                            o * (1 - tc * tc),
                        ],
                        -1,
                    )
                )
            else:
                r, z, p_n = gates[l].split(H, dim=-1)
                n = extra[l]
                dn_da = (1 - z) * (1 - n * n)  # ∂h'/∂a_n
                # [∂h'/∂a_r, ∂h'/∂a_z, ∂h'/∂p_n, ∂h'/∂a_n]
                factors.append(
                    torch.cat(
                        [
                            dn_da * p_n * r * (1 - r),
                            (hs[l][:-1] - n) * z * (1 - z),
                            dn_da * r,
                            dn_da,
                        ],
                        -1,
                    )
                )
        dX = [new(T, B, G) for _ in range(L)]  # ∂L/∂x^l_t (gate pre-activations' inputs)
        dP = [new(T, B, G) for _ in range(L)] if not lstm else dX  # GRU: ∂L/∂(W_hh h + b_hh)
        dh = [alpha.new_zeros(B, H) for _ in range(L)]  # δh^l_t
        dcell = [alpha.new_zeros(B, H) for _ in range(L)] if lstm else None  # δc^l_t
        project = ctx.project
        dC = None if project else new(T, B, M)  # ∂L/∂c_t
        memory_t = memory.transpose(1, 2)  # (B, M, S)
        dE = new(T, B, S)  # ∂L/∂e_t
        g_buf, carry = new(B, H), new(B, H)
        if bahdanau:
            A = a[0].shape[-1]
            a2 = new(B, S, A)  # a_t², a step at a time
            d_keys_sum = alpha.new_zeros(B, S, A)  # Σ_t ∂L/∂e_t ⊙ a_t²
            d_v = alpha.new_zeros(1, A)  # Σ_t Σ_s ∂L/∂e_ts a_ts
            v = vector_a.reshape(A)
            dU = new(T, B, A)  # ∂L/∂u_t
            W_q = weight_a
            if project:
                memory_x_t = torch.matmul(weight_x, memory_t)  # (B, G, S) (W_x m)ᵀ
                # ∂L/∂α_t = ∂L_t/∂α_t + m ∂L_t/∂c_t (all steps now) + m_x ∂L/∂x^1_t (in the loop)
                d_alpha = torch.baddbmm(
                    d_alpha.transpose(0, 1), d_c.transpose(0, 1), memory_t
                ).transpose(0, 1)  # (T, B, S)
        else:
            dZ = 1 - feeds[1:] * feeds[1:]  # ∂h̃/∂z, times the gradient below
            d_fed = alpha.new_zeros(B, H)  # δh̃_t
            W_cs, W_cc = weight_a[:, :H], weight_a[:, H:]

        for t in range(T - 1, -1, -1):
            g = torch.add(d_s[t], dh[-1], out=g_buf)  # ∂L_t/∂s_t + δs_t
            if not bahdanau:
                dz = dZ[t].mul_(d_feed[t] + d_fed)  # ∂L/∂z_t
                torch.addmm(d_c[t], dz, W_cc, out=dC[t])  # ∂L/∂c_t
                g.addmm_(dz, W_cs)
                d_a = torch.baddbmm(d_alpha[t].unsqueeze(1), dC[t].unsqueeze(1), memory_t)
                dE[t] = _softmax_backward(alpha[t], d_a.squeeze(1))
                g.add_(torch.bmm(dE[t].unsqueeze(1), keys).squeeze(1))  # + ∂L/∂e_t k
            for l in range(L - 1, -1, -1):
                F_t = factors[l][t]
                if lstm:
                    dz = dX[l][t]
                    torch.mul(g, F_t[:, 3 * H : 4 * H], out=dz[:, 3 * H :])  # ∂L/∂z_o
                    d_c_new = dcell[l].addcmul_(g, F_t[:, 4 * H :])  # ∂L/∂c' (in δc's buffer)
                    dz[:, : 3 * H].view(B, 3, H).copy_(F_t[:, : 3 * H].view(B, 3, H))
                    dz[:, : 3 * H].view(B, 3, H).mul_(d_c_new.unsqueeze(1))  # ∂L/∂z_i, z_f, z_g
                    d_c_new.mul_(gates[l][t, :, H : 2 * H])  # δc_{t-1} = ∂L/∂c' ⊙ f
                    torch.mm(dz, W_hh[l], out=dh[l])  # δh_{t-1} = ∂L/∂z W_hh
                else:
                    p = dP[l][t]
                    torch.mul(F_t[:, : 3 * H].view(B, 3, H), g.unsqueeze(1), out=p.view(B, 3, H))
                    dx = dX[l][t]
                    dx[:, : 2 * H] = p[:, : 2 * H]
                    torch.mul(g, F_t[:, 3 * H :], out=dx[:, 2 * H :])  # ∂L/∂a_n
                    torch.mul(g, gates[l][t, :, H : 2 * H], out=carry)  # direct path g ⊙ z
                    torch.addmm(carry, p, W_hh[l], out=dh[l])  # δh_{t-1} = g ⊙ z + dP W_hh
                if l > 0:
                    g = torch.mm(dX[l][t], W_ih[l], out=g_buf)  # ∂L/∂(d ⊙ h^{l-1}_t)
                    if drops[l] is not None:
                        g.mul_(drops[l][t])
                    g.add_(dh[l - 1])
            if bahdanau:
                if project:
                    d_a = torch.baddbmm(d_alpha[t].unsqueeze(1), dX[0][t].unsqueeze(1), memory_x_t)
                else:
                    torch.addmm(d_c[t], dX[0][t], weight_x, out=dC[t])  # ∂L/∂c_t
                    d_a = torch.baddbmm(d_alpha[t].unsqueeze(1), dC[t].unsqueeze(1), memory_t)
                dE[t] = _softmax_backward(alpha[t], d_a.squeeze(1))
                torch.mul(a[t], a[t], out=a2)
                du = torch.bmm(dE[t].unsqueeze(1), a2, out=dU[t].unsqueeze(1)).squeeze(1)
                d_keys_sum.addcmul_(a2, dE[t].unsqueeze(-1))
                d_v.addmm_(dE[t].view(1, B * S), a[t].view(B * S, A))
                du.mul_(-v)  # ∂L/∂u_t = -v ⊙ Σ_s ∂L/∂e_s a_s²
                dh[-1].addmm_(du, W_q)  # the query s_{t-1}
            else:
                torch.mm(dX[0][t], weight_x, out=d_fed)  # δh̃_{t-1}

        TB = T * B
        rows = lambda x: x.reshape(TB, x.shape[-1])  # noqa: E731
        need = ctx.needs_input_grad
        d_xg = dX[0] if need[3] else None
        alpha_b = alpha.permute(1, 2, 0)  # (B, S, T)
        if project:
            # ∂m_x = Σ_t α_tᵀ ∂L/∂x^1_t;  ∂m = Σ_t α_tᵀ ∂L_t/∂c_t + ∂m_x W_x
            d_memory_x = torch.bmm(alpha_b, dX[0].transpose(0, 1))  # (B, S, G)
            d_memory = torch.bmm(alpha_b, d_c.transpose(0, 1))
            d_memory.view(B * S, M).addmm_(d_memory_x.view(B * S, G), weight_x)
            d_weight_x = d_memory_x.view(B * S, G).t().mm(memory.reshape(B * S, M))
        else:
            d_memory = torch.bmm(alpha_b, dC.transpose(0, 1))  # Σ_t α_tᵀ ∂L/∂c_t
            fed_in = context if bahdanau else feeds[:-1]  # what W_x multiplies: c_t or h̃_{t-1}
            d_weight_x = rows(dX[0]).t().mm(rows(fed_in))  # Σ_t ∂L/∂x^1_tᵀ (c_t or h̃_{t-1})
        if bahdanau:
            # ∂k = v ⊙ (Σ_t ∂L/∂e_t - Σ_t ∂L/∂e_t a_t²);  ∂v = Σ ∂L/∂e a;  ∂W_q = Σ ∂L/∂u_tᵀ s_{t-1}
            d_keys = (dE.sum(0).unsqueeze(-1) - d_keys_sum) * v
            d_weight_a, d_vector_a = rows(dU).t().mm(rows(hs[-1][:-1])), d_v
            d_feed0 = None
        else:
            # ∂k = Σ_t ∂L/∂e_tᵀ s_t;  ∂W_c = Σ_t ∂L/∂z_tᵀ [s_t; c_t];  ∂b_c = Σ_t ∂L/∂z_t
            d_keys = torch.bmm(dE.permute(1, 2, 0), hs[-1][1:].transpose(0, 1))
            d_weight_a = torch.cat(
                [rows(dZ).t().mm(rows(hs[-1][1:])), rows(dZ).t().mm(rows(context))], 1
            )
            d_vector_a = dZ.sum((0, 1))
            d_feed0 = d_fed
        d_layers = []
        for l in range(L):
            h_prev = rows(hs[l][:-1])
            d_hh = rows(dP[l])
            d_ih = rows(dX[l])
            d_layers += [
                dh[l],
                dcell[l] if lstm else None,
                None if l == 0 else d_ih.t().mm(rows(inputs[l])),
                None if l == 0 else d_ih.sum(0),
                d_hh.t().mm(h_prev),
                d_hh.sum(0),
                None,
            ]
        return (
            None,
            None,
            None,
            d_xg,
            d_memory,
            d_keys,
            d_feed0,
            d_weight_x,
            d_weight_a,
            d_vector_a,
            *d_layers,
        )
