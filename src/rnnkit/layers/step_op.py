"""The one-step path's shortcut through torch's own RNN op (``rnnkit.layers.stepper``): where
its "auto" setting would take the torch backend (more than one intra-op thread, or not the CPU),
a GRU stack (reset after) or an Elman stack of tanh or ReLU steps through one call of torch's op
over the whole stack, the call torch.nn.GRU / RNN make, without their module around it."""

from __future__ import annotations

import torch
from torch import Tensor


def stack_op(layer, name: str):
    """torch's RNN op that computes the whole stack's step as the step functions would, for
    "auto" where it takes the torch backend: a GRU stack (reset after) or an Elman stack of one
    nonlinearity, tanh or ReLU. There one call of that op beats the chain of small torch ops;
    the LSTM keeps the step functions, which beat torch's per-call oneDNN set-up
    (docs/speed.md#issue-17s-targets-on-an-intel-xeon). None elsewhere. Kept on the layer (the
    cells' conventions are fixed at construction)."""
    cached = layer.__dict__.get("_step_op")
    if cached is None:
        cached = layer.__dict__["_step_op"] = (_choose(layer._cells, name),)
    return cached[0]


def _choose(cells, name: str):
    if name == "gru" and all(cell.reset_after for cell in cells):
        return torch._VF.gru
    if name == "elman":
        kinds = {cell.nonlinearity for cell in cells}
        if kinds == {"tanh"}:
            return torch._VF.rnn_tanh
        if kinds == {"relu"}:
            return torch._VF.rnn_relu
    return None


def op_step(
    layer, op, params: list[Tensor], input: Tensor, hx_parts: tuple, batched: bool
) -> tuple[Tensor, Tensor]:
    """The layer's step through ``op`` (``stack_op``) with its parameters in torch's order
    (the layer's own: weight_ih_l0, weight_hh_l0[, bias_ih_l0, bias_hh_l0], ...): (output, h_n)
    with the layer's shapes."""
    L, H = layer.num_layers, layer.hidden_size
    x = input if batched else input.unsqueeze(1)  # (1, B, I), or (B, 1, I) batch first
    first = batched and layer.batch_first
    B = x.shape[0] if first else x.shape[1]
    if hx_parts:
        h0 = hx_parts[0] if batched else hx_parts[0].unsqueeze(1)  # (L, B, H)
    else:
        h0 = x.new_zeros(L, B, H)
    y, h = op(x, h0.contiguous(), params, layer.bias, L, 0.0, False, False, first)
    return (y, h) if batched else (y.squeeze(1), h.squeeze(1))
