"""Where the attention decoder's kernel (``rnnkit.kernels.attention_decoder``) applies, and the
call that runs a ``rnnkit.seq2seq.Decoder``'s teacher-forced steps through it: the decoder's
tensors laid out as the Function takes them, dropout masks drawn in the step loop's order."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.attention import AdditiveAttention, LuongDot, LuongGeneral
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels.attention_decoder import AttentionDecoderBPTT


def applies(decoder: nn.Module) -> bool:
    """Whether ``decoder``'s teacher-forced steps can run through the kernel: its cells are
    exactly ``GRUCell`` (reset_after) or ``LSTMCell`` (plain), with biases, its attention
    exactly ``AdditiveAttention``, or ``LuongDot``/``LuongGeneral`` with input feeding, its
    dropout an ``nn.Dropout``."""
    att = decoder.attention
    if type(att) is AdditiveAttention:
        pass
    elif type(att) in (LuongDot, LuongGeneral):
        if not decoder.input_feeding:
            return False
    else:
        return False
    if type(decoder.drop) is not nn.Dropout:
        return False
    for cell in decoder.cells:
        if type(cell) is GRUCell:
            ok = cell.reset_after
        elif type(cell) is LSTMCell:
            ok = not cell.peephole and not cell.layer_norm
        else:
            ok = False
        if not ok or cell.bias_ih is None or type(cell) is not type(decoder.cells[0]):
            return False
    return True


def run_decoder(decoder: nn.Module, state: Any, y_in: Tensor):
    """The teacher-forced steps of ``decoder`` (``applies``) from ``state`` (a ``DecoderState``)
    on the fed tokens y_in (T, B): (h̃ (T, B, H) | None, s (T, B, H), c (T, B, M), α (T, B, S)),
    what the step loop gives ``Decoder.output``. Dropout (training mode) draws its masks in the
    step loop's order: step by step, the embedding's, then each layer's input above the first,
    so a seeded run matches the step loop's."""
    T, B = y_in.shape
    cells, att, drop = decoder.cells, decoder.attention, decoder.drop
    H, L = decoder.hidden_size, len(cells)
    emb = decoder.embedding(y_in)  # (T, B, E)
    E = emb.shape[-1]
    masks = [None] * L
    if drop.training and drop.p > 0:
        keep = 1 - drop.p
        step_masks = []
        for _ in range(T):  # the step loop's order of draws
            step_masks.append(
                [emb.new_empty(B, E if l == 0 else H).bernoulli_(keep) for l in range(L)]
            )
        masks = [torch.stack([m[l] for m in step_masks]).div_(keep) for l in range(L)]
        emb = emb * masks[0]
    cell0 = cells[0]
    xg = F.linear(emb, cell0.weight_ih[:, :E], cell0.bias_ih)  # (T, B, G): all steps at once
    layers_state, feed, memory, keys, mask = state[:5]
    flat = []
    for l, cell in enumerate(cells):
        s = layers_state[l]
        h0, c0 = s if isinstance(s, tuple) else (s, None)
        flat += [
            h0,
            c0,
            None if l == 0 else cell.weight_ih,
            None if l == 0 else cell.bias_ih,
            cell.weight_hh,
            cell.bias_hh,
            None if l == 0 else masks[l],
        ]
    if type(att) is AdditiveAttention:
        kind, weight_a, vector_a = "bahdanau", att.query.weight, att.v.weight
    else:
        kind, weight_a, vector_a = "luong", decoder.combine.weight, decoder.combine.bias
    cell = "lstm" if type(cell0) is LSTMCell else "gru"
    out = AttentionDecoderBPTT.apply(
        kind, cell, ~mask, xg, memory, keys, feed, cell0.weight_ih[:, E:], weight_a, vector_a, *flat
    )
    s, c, alpha = out[:3]
    return (out[3] if kind == "luong" else None), s, c, alpha
