r"""A kernel's saved activations over a chunk rebuilt from its states, without the recursion.

Checkpointing through time (``rnnkit.kernels.recompute``) recomputes each chunk in backward.
A layer whose every state h_a+1 .. h_b over the chunk is already known need not run its
recursion again: with h_{t-1} known for every step, each gate pre-activation is one matrix
product over all k·B rows of the chunk, and the rest is element-wise. The top layer of a stack
is such a layer when its output is the stack's (no residual term nor dropout after it) and
there is no length mask: the Function returns ys = (h_t), which the caller holds anyway, so
keeping it costs nothing.

``rebuild(kernel, ctx, hs, *args)`` fills ``ctx`` as the kernel Function's forward would over
the same ``args`` (its inputs without the origin; the mask None), given hs (k, B, H) = the
chunk's states; the kernel's own backward then runs unchanged. The values are the forward's to
rounding: the products are taken over the whole chunk at once rather than one step at a time.

- Elman: forward keeps (h_0, W_hh, hs); nothing to recompute.
- GRU, reset after: [p_r, p_z, p_n] = H_prev W_hhᵀ + b_hh, r, z = σ(x_{r,z} + p_{r,z}),
  n = tanh(x_n + r ⊙ p_n); kept (h_0, W_hh, [r, z, p_n], n, hs).
  Reset before: [r, z] = σ(x_{r,z} + b_{r,z} + H_prev W_{rz}ᵀ), n = tanh(x_n + b_n + (r ⊙ H_prev)
  W_nᵀ); kept (h_0, W_hh, [r, z], n, hs).
- Minimal GRU: [u, c̃] = [σ, tanh](x + b + C_prev W_hhᵀ); kept (c_0, W_hh, [u, c̃], cs).
- LSTM without peepholes or layer norm: [i, f, g, o] = [σ, σ, tanh, σ](x + b_hh + H_prev W_hhᵀ),
  then c_t = f ⊙ c_{t-1} + i ⊙ g, a scan of k element-wise steps from c_a, and tanh(c_t); kept
  (gates, h_0..h_k, c_0..c_k, tanh c, ...). Its h_0 and c_0 are the chunk's boundary state.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from rnnkit.kernels.dispatch import save_with_origin


def _previous(h0: Tensor, hs: Tensor) -> Tensor:
    """(k, B, H) h_{t-1} of every step: h_0, then hs but its last."""
    return torch.cat([h0.unsqueeze(0), hs[:-1]])


def _times(a: Tensor, w: Tensor, bias: Tensor | None, add: Tensor | None = None) -> Tensor:
    """(k, B, O) a W ᵀ (+ bias) (+ add) for a (k, B, H): one product over all rows."""
    k, B, H = a.shape
    out = torch.mm(a.reshape(k * B, H), w.t()).view(k, B, -1)
    if add is not None:
        out.add_(add)
    return out if bias is None else out.add_(bias)


def elman(ctx: Any, hs: Tensor, xg, h0, weight_hh, bias_hh, mask, nonlinearity) -> None:
    ctx.nonlinearity = nonlinearity
    save_with_origin(ctx, (), h0, weight_hh, hs, mask)


def gru(ctx: Any, hs: Tensor, xg, h0, weight_hh, bias_hh, mask, reset_after) -> None:
    H = hs.shape[-1]
    h_prev = _previous(h0, hs)
    if reset_after:
        gates = _times(h_prev, weight_hh, bias_hh)  # [p_r, p_z, p_n]
        gates[..., : 2 * H].add_(xg[..., : 2 * H]).sigmoid_()  # r, z
        n = torch.addcmul(xg[..., 2 * H :], gates[..., :H], gates[..., 2 * H :]).tanh_()
    else:
        b = (None, None) if bias_hh is None else (bias_hh[: 2 * H], bias_hh[2 * H :])
        gates = _times(h_prev, weight_hh[: 2 * H], b[0], xg[..., : 2 * H]).sigmoid_()  # r, z
        n = _times(gates[..., :H] * h_prev, weight_hh[2 * H :], b[1], xg[..., 2 * H :]).tanh_()
    ctx.reset_after, ctx.has_bias = reset_after, bias_hh is not None
    save_with_origin(ctx, (), h0, weight_hh, gates, n, hs, mask)


def minimal_gru(ctx: Any, cs: Tensor, xg, c0, weight_hh, bias_hh, mask) -> None:
    H = cs.shape[-1]
    gates = _times(_previous(c0, cs), weight_hh, bias_hh, xg)  # [a_u, a_c]
    gates[..., :H].sigmoid_()
    gates[..., H:].tanh_()
    ctx.has_bias = bias_hh is not None
    save_with_origin(ctx, (), c0, weight_hh, gates, cs, mask)


def lstm(ctx: Any, hs: Tensor, xg, h0, c0, mask, weight_hh, bias_hh, *options) -> None:
    if any(o is not None for o in options):
        raise ValueError("the LSTM's rebuild covers the plain cell (no peepholes, no layer norm)")
    k, B, H = hs.shape
    gates = _times(_previous(h0, hs), weight_hh, bias_hh, xg)  # (k, B, 4H) pre-activations
    gates[..., : 2 * H].sigmoid_()  # i, f
    gates[..., 2 * H : 3 * H].tanh_()  # g
    gates[..., 3 * H :].sigmoid_()  # o
    i, f, g, _ = gates.split(H, dim=-1)
    cs = hs.new_empty(k + 1, B, H)  # c_0..c_k
    cs[0] = c0
    ig = i * g
    for t in range(k):  # c_t = f ⊙ c_{t-1} + i ⊙ g: element-wise only
        torch.addcmul(ig[t], f[t], cs[t], out=cs[t + 1])
    tanh_cs = torch.tanh(cs[1:])
    all_h = torch.cat([h0.unsqueeze(0), hs])  # h_0..h_k
    save_with_origin(ctx, (), gates, all_h, cs, tanh_cs, mask, weight_hh, *options, *(None,) * 4)


REBUILDS = {"elman": elman, "gru": gru, "minimal_gru": minimal_gru, "lstm": lstm}
