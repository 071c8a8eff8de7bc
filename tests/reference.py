"""Independent references: the lectures' equations written out naively, one step at a time."""

from __future__ import annotations

import torch


def sigmoid(a):
    return 1 / (1 + torch.exp(-a))


def jordan_loop(xs, y0, W_ih, b_ih, W_yh, b_yh, W_hy, b_hy, f, g):
    """Jordan (1986): the previous output feeds the hidden layer. xs (T, B, I)."""
    ys, y = [], y0
    for t in range(xs.shape[0]):
        h = f(xs[t] @ W_ih.T + b_ih + y @ W_yh.T + b_yh)
        y = g(h @ W_hy.T + b_hy)
        ys.append(y)
    return torch.stack(ys), y


def minimal_gru_step(x, c, W_u, b_u, W_c, b_c):
    """The lectures' minimal GRU with the concatenated weights W [c_{t-1}, x_t]."""
    cx = torch.cat([c, x], dim=-1)
    u = sigmoid(cx @ W_u.T + b_u)
    c_tilde = torch.tanh(cx @ W_c.T + b_c)
    return u * c_tilde + (1 - u) * c


def gru_reset_before_step(x, h, W_ih, W_hh, b_ih, b_hh):
    """Cho et al. (2014): the reset gate applied to h before the recurrent product."""
    Wr, Wz, Wn = W_ih.chunk(3)
    Ur, Uz, Un = W_hh.chunk(3)
    br, bz, bn = b_ih.chunk(3)
    cr, cz, cn = b_hh.chunk(3)
    r = sigmoid(x @ Wr.T + br + h @ Ur.T + cr)
    z = sigmoid(x @ Wz.T + bz + h @ Uz.T + cz)
    n = torch.tanh(x @ Wn.T + bn + (r * h) @ Un.T + cn)
    return (1 - z) * n + z * h


def ln(a, gain, bias=None, eps=1e-5):
    mu = a.mean(-1, keepdim=True)
    var = ((a - mu) ** 2).mean(-1, keepdim=True)
    out = (a - mu) / torch.sqrt(var + eps) * gain
    return out if bias is None else out + bias


def lstm_step(x, h, c, p, peephole=False, layer_norm=False):
    """LSTM with optional peepholes (Gers & Schmidhuber 2000) and layer norm (Ba et al. 2016)."""
    if layer_norm:
        a = ln(x @ p["weight_ih"].T, p["weight_ln_ih"]) + ln(
            h @ p["weight_hh"].T, p["weight_ln_hh"]
        )
        a = a + p["bias_ih"] + p["bias_hh"]
    else:
        a = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]
    ai, af, ag, ao = a.chunk(4, dim=-1)
    if peephole:
        ai, af = ai + p["weight_ci"] * c, af + p["weight_cf"] * c
    i, f, g = sigmoid(ai), sigmoid(af), torch.tanh(ag)
    c = f * c + i * g
    o = sigmoid(ao + p["weight_co"] * c) if peephole else sigmoid(ao)
    cn = ln(c, p["weight_ln_c"], p["bias_ln_c"]) if layer_norm else c
    return o * torch.tanh(cn), c
