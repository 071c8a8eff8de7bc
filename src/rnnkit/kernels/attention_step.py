r"""Decoding steps of a Bahdanau attention decoder with its memory projected once per source.

Bahdanau's context c_t = Σ_s α_ts m_s enters the decoder linearly, twice: in the first layer's
input product, W_x c_t (W_x = W_ih[:, E:], the columns after the embedding's), and in the
attentional layer, h̃_t = tanh(W_cs s_t + W_cc c_t + b_c) (W_c = [W_cs, W_cc]). Both are
weighted sums of the memory projected once:

    W_x c_t  = Σ_s α_ts (W_x m_s)  = α_t m_x,      m_x = m W_xᵀ   (B, S, G)
    W_cc c_t = α_t m_c,                            m_c = m W_ccᵀ  (B, S, H)

so a step multiplies its (1, S) weights by them instead of a row of M numbers by (M, G) and
(M, H) matrices: at the g2p preset's sizes (M = H = 256, G = 3H, S ≈ 9) 40% of a step's
multiply-adds. The training kernel (``rnnkit.kernels.attention_decoder``) projects m_x the same
way. Three more savings of the step:

- tanh(x) = 2σ(2x) - 1, so e_s = vᵀ tanh(k_s + W_q s_{t-1}) = 2 vᵀ σ(2k_s + 2 W_q s_{t-1}) - Σ v,
  and the softmax ignores the constant: one sigmoid pass over the (N, S, A) sums, which costs
  a quarter of torch's tanh on the CPUs here (h̃ likewise);
- a vocabulary of at most ``TABLE_TOKENS`` tokens: every token's first-layer input gates
  W_e E_y + b_ih, made once (``Weights.embedded``);
- with one layer, W_q s_{t-1} and W_hh s_{t-1} as one product (``Weights.query``).

``step_weights`` makes these weights once and keeps them on the decoder until a parameter
changes.

The K beams of a source share one copy of the per-source tensors (``Projected``), and the step
views its N = A·K rows as (A, K): the context products are (K, S) x (S, G) per source.

``prepare(decoder, state)`` moves the memory's parts of a ``DecoderState`` into a ``Projected``
(its ``projected`` field) when ``applies(decoder)``, the decoder is in eval mode (dropout would
have to act on c_t, not on the projections) and gradients are off (the step writes in place);
``Decoder.step`` then runs ``step`` here: the same function as the plain step, up to rounding
(tested). ``Decoder.project_memory = False`` turns it off. ``rnnkit.tasks.seq2seq_task.predict``
prepares the state for beam search (K rows a source share the projection; a greedy decode has
one row a source and as many steps as source positions, so it would gain little).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.attention import AdditiveAttention, masked_softmax
from rnnkit.cells.gru import GRUCell
from rnnkit.kernels import attention_decoder_run
from rnnkit.kernels.fused import step_ops


def applies(decoder: nn.Module) -> bool:
    """Whether ``step`` can run ``decoder``: Bahdanau attention (exactly ``AdditiveAttention``)
    and the cells the training kernel takes (``attention_decoder_run.applies``)."""
    return type(decoder.attention) is AdditiveAttention and attention_decoder_run.applies(decoder)


class Weights(NamedTuple):
    """The decoder's weights as ``step`` takes them, made once by ``prepare``.

    memory: [W_x; W_cc] (G + H, M), for m_x and m_c in one product.
    query: (2 W_q, None), or with one layer ([2 W_q; W_hh], [0; b_hh]): 2u and W_hh s + b_hh
    in one product. embedded: (V, G) every token's first-layer input gates W_e E_y + b_ih, or
    None (then input: W_e, b_ih). combine: 2 W_cs, 2 b_c. v2: 2 v as (A_w, 1)."""

    memory: Tensor
    query: tuple[Tensor, Tensor | None]
    embedded: Tensor | None
    input: tuple[Tensor, Tensor]
    combine: tuple[Tensor, Tensor]
    v2: Tensor


class Projected:
    """The per-source parts of a prepared state: m_x (A, S, G), m_c (A, S, H), 2k (A, S, A_w),
    the source mask (A, S), and ``rows`` (N,), the source of each of the state's N rows.

    Beam search's K rows of a source share these: ``select_rows`` (the first step's widening,
    dropping finished sequences) selects ``rows`` and keeps only the sources still used, in
    order, so the big tensors are never repeated per beam. ``group`` is K when the rows are K
    consecutive rows a source, sources in order (beam search's layout; the step then views
    its N rows as (A, K)), else 0 (the step gathers the rows' sources). ``weights``: the
    decoder's weights as the step takes them (``Weights``), and ``scratch`` a buffer for the
    (N, S, A_w) scores, shared by the states that ``select_rows`` makes."""

    def __init__(self, tensors: tuple, rows: Tensor, weights: Weights, scratch: list) -> None:
        self.tensors, self.rows, self.weights, self.scratch = tensors, rows, weights, scratch
        A, N = tensors[0].shape[0], len(rows)
        layout = torch.arange(A).repeat_interleave(N // A) if N % A == 0 else None
        self.group = N // A if layout is not None and torch.equal(rows, layout) else 0

    def select_rows(self, index: Tensor) -> Projected:
        rows = self.rows[index.cpu()]
        used, rows = torch.unique(rows, sorted=True, return_inverse=True)
        tensors = self.tensors
        if len(used) < tensors[0].shape[0]:
            idx = used.to(tensors[0].device)
            tensors = tuple(t.index_select(0, idx) for t in tensors)
        return Projected(tensors, rows, self.weights, self.scratch)

    def buffer(self, *shape: int) -> Tensor:
        """A tensor of ``shape`` in the scratch memory (grown when too small): the scores'
        buffer, allocated once, not mapped afresh page by page every step."""
        n = math.prod(shape)
        if self.scratch[0].numel() < n:
            self.scratch[0] = self.scratch[0].new_empty(n)
        return self.scratch[0][:n].view(shape)

    def per_row(self) -> tuple[Tensor, ...]:
        """The tensors for each of the N rows (copies unless one row a source)."""
        if self.group == 1:
            return self.tensors
        idx = self.rows.to(self.tensors[0].device)
        return tuple(t.index_select(0, idx) for t in self.tensors)


TABLE_TOKENS = 4096  # at most this many tokens: their first-layer input gates made once


def step_weights(decoder: nn.Module) -> Weights:
    """The decoder's ``Weights``, kept on it while its parameters are unchanged (the key is
    every parameter's identity, storage and version: an optimiser's step, a load or a move to
    another device changes it)."""
    key = tuple((id(p), p.data_ptr(), p._version) for p in decoder.parameters())
    kept = getattr(decoder, "_step_weights", None)
    if kept is not None and kept[0] == key:
        return kept[1]
    E, H = decoder.embedding.embedding_dim, decoder.hidden_size
    emb, cell0, att = decoder.embedding.weight, decoder.cells[0], decoder.attention
    W_e = cell0.weight_ih[:, :E].contiguous()
    embedded = F.linear(emb, W_e, cell0.bias_ih) if len(emb) <= TABLE_TOKENS else None
    query = (att.query.weight * 2, None)
    if len(decoder.cells) == 1:  # 2 W_q s and W_hh s + b_hh in one product
        zeros = cell0.bias_hh.new_zeros(att.query.out_features)
        query = (torch.cat([query[0], cell0.weight_hh]), torch.cat([zeros, cell0.bias_hh]))
    combine = decoder.combine
    weights = Weights(
        torch.cat([cell0.weight_ih[:, E:], combine.weight[:, H:]]),
        query,
        embedded,
        (W_e, cell0.bias_ih),
        (combine.weight[:, :H] * 2, combine.bias * 2),
        att.v.weight.view(-1, 1) * 2,
    )
    decoder._step_weights = (key, weights)
    return weights


def prepare(decoder: nn.Module, state: Any) -> Any:
    """``state`` for ``step`` (its ``projected`` a ``Projected``; the memory, keys and mask
    moved into it), if ``decoder`` is in eval mode with gradients off, ``applies`` and
    ``decoder.project_memory``; otherwise ``state`` as it is."""
    if decoder.training or torch.is_grad_enabled() or not decoder.project_memory:
        return state
    if not applies(decoder) or state.projected is not None:
        return state
    weights = step_weights(decoder)
    G = decoder.cells[0].weight_hh.shape[0]
    # m_x and m_c in one product; a contiguous memory multiplies twice as fast as the view
    both = F.linear(state.memory.contiguous(), weights.memory)  # (B, S, G + H)
    memory_x, memory_c = both[..., :G], both[..., G:]
    tensors = (memory_x, memory_c, state.keys * 2, state.mask)
    projected = Projected(
        tensors, torch.arange(len(state.memory)), weights, [memory_x.new_empty(0)]
    )
    return state._replace(memory=None, keys=None, mask=None, projected=projected)


def _gru(cell: GRUCell, x: Tensor, h: Tensor, P: Tensor | None) -> Tensor:
    """A GRU (reset_after) step from its input gates x = W_ih x + b_ih (N, 3H) and, if made,
    P = W_hh h + b_hh (overwritten)."""
    if P is None:
        P = F.linear(h, cell.weight_hh, cell.bias_hh)  # [p_r, p_z, p_n]
    ops = step_ops(P)
    if ops is not None:
        n, out = torch.empty_like(h), torch.empty_like(h)
        ops.gru_forward(P, x, h, n, out, None)
        return out
    H = h.shape[-1]
    rz = P[:, : 2 * H].add_(x[:, : 2 * H]).sigmoid_()
    r, z = rz[:, :H], rz[:, H:]
    n = torch.addcmul(x[:, 2 * H :], r, P[:, 2 * H :]).tanh_()
    return torch.lerp(n, h, z)  # h' = n + z ⊙ (h - n)


def _lstm(
    cell: nn.Module, x: Tensor, state: tuple[Tensor, Tensor], P: Tensor | None
) -> tuple[Tensor, Tensor]:
    """A plain LSTM step from its input gates x = W_ih x + b_ih (N, 4H) and, if made,
    P = W_hh h + b_hh (overwritten): (h', c')."""
    h, c = state
    if P is None:
        P = F.linear(h, cell.weight_hh, cell.bias_hh)
    P = P.add_(x)
    H = h.shape[-1]
    P[:, : 2 * H].sigmoid_()
    P[:, 2 * H : 3 * H].tanh_()
    P[:, 3 * H :].sigmoid_()
    i, f, g, o = P.split(H, dim=1)
    c = torch.addcmul(f * c, i, g)
    return o * c.tanh(), c


def step(decoder: nn.Module, y_prev: Tensor, state: Any) -> tuple[Tensor, Any, Tensor]:
    """``Decoder.step`` on a ``prepare``d state: (logits (N, V), state, α (N, S))."""
    layers, projected = state.layers, state.projected
    att, cells = decoder.attention, decoder.cells
    N = len(y_prev)
    K = projected.group or 1  # rows a source: the N rows seen as (A, K)
    memory_x, memory_c, keys2, mask = projected.tensors if K > 1 else projected.per_row()
    A = N // K
    top = layers[-1]
    s = top[0] if isinstance(top, tuple) else top  # the query: s_{t-1}
    weights, Aw = projected.weights, att.query.out_features
    uP = F.linear(s, *weights.query)  # 2u (and, one layer, W_hh s + b_hh: P)
    u2, P = uP[:, :Aw].reshape(A, K, 1, Aw), (uP[:, Aw:] if Aw < uP.shape[1] else None)
    # e_s = vᵀ tanh(k_s + u) = 2 vᵀ σ(2 k_s + 2 u) - Σ v, and the softmax ignores the constant
    a = projected.buffer(A, K, keys2.shape[1], Aw)
    torch.add(keys2.unsqueeze(1), u2, out=a).sigmoid_()  # (A, K, S, A_w)
    e = torch.matmul(a, weights.v2).squeeze(-1)  # (A, K, S), less Σ v
    w = masked_softmax(e, mask.unsqueeze(1))  # α (A, K, S)
    if weights.embedded is not None:  # a small vocabulary's input gates, made once
        xg = weights.embedded.index_select(0, y_prev)
    else:
        xg = F.linear(decoder.embedding(y_prev), *weights.input)
    x = torch.baddbmm(xg.view(A, K, -1), w, memory_x).view(N, -1)  # xg + W_x c_t
    new_layers = []
    for l, cell in enumerate(cells):
        if l > 0:
            x = F.linear(x, cell.weight_ih, cell.bias_ih)
        P_l = P if l == 0 else None
        if isinstance(cell, GRUCell):
            x = _gru(cell, x, layers[l], P_l)
            new_layers.append(x)
        else:
            x, c = _lstm(cell, x, layers[l], P_l)
            new_layers.append((x, c))
    z2 = F.linear(x, *weights.combine).view(A, K, -1)  # 2 (W_cs s + b_c)
    # h̃ = tanh(W_cs s + W_cc c + b) = 2 σ(2 (W_cs s + b) + 2 α m_c) - 1
    h_tilde = torch.baddbmm(z2, w, memory_c, alpha=2).view(N, -1).sigmoid_()
    h_tilde = h_tilde.mul_(2).sub_(1)
    return decoder.head(h_tilde), state._replace(layers=tuple(new_layers)), w.view(N, -1)
