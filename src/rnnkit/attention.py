"""Attention over a memory of encoder outputs: additive (Bahdanau) and multiplicative (Luong).

A decoder state q (the query) scores every encoder output m_s (the memory), the scores become
weights by a softmax over the *real* source positions (padding gets weight exactly 0), and the
context is the weighted sum of the memory:

    e_s = score(q, m_s)          α = softmax(e) over s < length      c = Σ_s α_s m_s

- additive (Bahdanau, Cho & Bengio, "Neural machine translation by jointly learning to align and
  translate", ICLR 2015):  score(q, m) = vᵀ tanh(W_q q + W_m m)
- dot (Luong, Pham & Manning, "Effective approaches to attention-based neural machine
  translation", EMNLP 2015):  score(q, m) = qᵀ m                (needs equal widths)
- general (Luong et al. 2015):  score(q, m) = qᵀ W_a m
- location-aware (Chorowski et al. 2015): additive, plus features of the previous step's
  weights α_{t-1} (``LocationAttention``; the decoder carries α_{t-1} in its state)

The memory's projection (W_m m, or W_a m) does not depend on the query: ``keys(memory)`` computes
it once per source sentence, and every decoder step reuses it.

Where a decoder asks (``queries_before_step``): Bahdanau's decoder queries with its previous state
s_{t-1}, before the recurrent step, and feeds the context into that step; Luong's queries with the
new state s_t, after the step (optionally feeding h̃_t into the next step: input feeding).
``ATTENTION`` maps each kind's name to its class; every other list of kinds derives from it.

Shapes: query (B, Q); memory (B, S, M), batch-first because every step multiplies it by a
(B, 1, ·) query; mask (B, S) bool, True at real positions. Returns context (B, M), weights (B, S).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def masked_softmax(scores: Tensor, mask: Tensor | None) -> Tensor:
    """softmax over the last axis of ``scores`` where ``mask`` is True; exactly 0 elsewhere.

    A row with no True position gets all zeros (not NaN).
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    scores = scores.masked_fill(~mask, -math.inf)
    weights = torch.softmax(scores, dim=-1)
    # an all-masked row is NaN after the softmax (-inf - -inf): make it zeros
    return weights.masked_fill(~mask, 0.0)


class AdditiveAttention(nn.Module):
    """Bahdanau's attention: e_s = vᵀ tanh(W_q q + W_m m_s); queried before the decoder's step.

    Args:
        query_size: Q, the decoder state's width.
        memory_size: M, the encoder outputs' width.
        attention_size: A, the hidden width of the scoring network (0: Q).
    Parameters: query (A, Q) no bias, memory (A, M) with bias, v (1, A) no bias.
    """

    queries_before_step = True
    same_widths = False  # whether the query and memory widths must be equal
    uses_previous = False  # whether it scores with the previous step's weights α_{t-1}

    def __init__(self, query_size: int, memory_size: int, attention_size: int = 0) -> None:
        super().__init__()
        _check_sizes(query_size=query_size, memory_size=memory_size)
        if isinstance(attention_size, bool) or not isinstance(attention_size, int):
            raise TypeError(f"attention_size must be an int, got {attention_size!r}")
        if attention_size < 0:
            raise ValueError(f"attention_size must be >= 0, got {attention_size}")
        attention_size = attention_size or query_size
        self.query = nn.Linear(query_size, attention_size, bias=False)
        self.memory = nn.Linear(memory_size, attention_size)
        self.v = nn.Linear(attention_size, 1, bias=False)

    def keys(self, memory: Tensor) -> Tensor:
        """W_m m for every position, (B, S, A): computed once per source."""
        return self.memory(memory)

    def forward(
        self, query: Tensor, memory: Tensor, mask: Tensor | None, keys: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        keys = self.keys(memory) if keys is None else keys  # (B, S, A)
        e = self.v(torch.tanh(keys + self.query(query).unsqueeze(1))).squeeze(-1)  # (B, S)
        alpha = masked_softmax(e, mask)
        c = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)  # (B, M)
        return c, alpha


class LocationAttention(AdditiveAttention):
    """Location-aware attention (Chorowski, Bahdanau, Serdyuk, Cho & Bengio, "Attention-based
    models for speech recognition", NeurIPS 2015): Bahdanau's score, plus features of where the
    previous step looked,

        f = F ∗ α_{t-1}          (``filters`` 1-D filters of odd ``width`` over the positions)
        e_s = vᵀ tanh(W_q q + W_m m_s + U f_s)

    so a step can place itself relative to the last one ("one position further on"), which
    content alone cannot do among equal-looking positions (the digits of two numbers). The
    decoder carries α_{t-1} in its state (``previous``); before the first step it is 0.

    Parameters: those of ``AdditiveAttention``, conv (filters, 1, width) and location
    (A, filters) without biases.
    """

    uses_previous = True

    def __init__(
        self,
        query_size: int,
        memory_size: int,
        attention_size: int = 0,
        filters: int = 8,
        width: int = 5,
    ) -> None:
        super().__init__(query_size, memory_size, attention_size)
        if width < 1 or width % 2 == 0 or filters < 1:
            raise ValueError(f"width must be odd and filters >= 1, got {width} and {filters}")
        self.conv = nn.Conv1d(1, filters, width, padding=width // 2, bias=False)
        self.location = nn.Linear(filters, self.query.out_features, bias=False)

    def forward(
        self,
        query: Tensor,
        memory: Tensor,
        mask: Tensor | None,
        keys: Tensor | None = None,
        previous: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        keys = self.keys(memory) if keys is None else keys  # (B, S, A)
        if previous is None:
            previous = keys.new_zeros(keys.shape[:2])
        f = self.conv(previous.unsqueeze(1)).transpose(1, 2)  # (B, S, filters)
        e = self.v(torch.tanh(keys + self.query(query).unsqueeze(1) + self.location(f)))
        alpha = masked_softmax(e.squeeze(-1), mask)
        c = torch.bmm(alpha.unsqueeze(1), memory).squeeze(1)  # (B, M)
        return c, alpha


class MultiplicativeAttention(nn.Module):
    """Luong's attention: e_s = qᵀ m_s ("dot") or e_s = qᵀ W_a m_s ("general"); queried after
    the decoder's step.

    Args:
        query_size: Q.
        memory_size: M; "dot" needs M == Q.
        kind: "dot" or "general".
    Parameters ("general" only): weight (Q, M) as a bias-free nn.Linear(M, Q).
    """

    queries_before_step = False
    same_widths = False  # "dot" needs them equal: see LuongDot
    uses_previous = False

    def __init__(self, query_size: int, memory_size: int, kind: str = "general") -> None:
        super().__init__()
        _check_sizes(query_size=query_size, memory_size=memory_size)
        if kind not in ("dot", "general"):
            raise ValueError(f"kind must be 'dot' or 'general', got {kind!r}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(
                f"dot attention needs equal query and memory widths, got {query_size} and "
                f"{memory_size}"
            )
        self.kind = kind
        self.weight = nn.Linear(memory_size, query_size, bias=False) if kind == "general" else None

    def keys(self, memory: Tensor) -> Tensor:
        """W_a m for every position ("general"), or the memory itself ("dot"), (B, S, Q)."""
        return memory if self.weight is None else self.weight(memory)

    def forward(
        self, query: Tensor, memory: Tensor, mask: Tensor | None, keys: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        c, alpha = self.attend_all(query.unsqueeze(1), memory, mask, keys)
        return c.squeeze(1), alpha.squeeze(1)

    def attend_all(
        self, queries: Tensor, memory: Tensor, mask: Tensor | None, keys: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Many queries (B, T, Q) at once (a decoder's every step): contexts (B, T, M), weights
        (B, T, S); row t is ``forward(queries[:, t], ...)``."""
        keys = self.keys(memory) if keys is None else keys  # (B, S, Q)
        e = torch.bmm(queries, keys.transpose(1, 2))  # (B, T, S)
        alpha = masked_softmax(e, None if mask is None else mask.unsqueeze(1))
        return torch.bmm(alpha, memory), alpha  # (B, T, M), (B, T, S)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}"


class LuongDot(MultiplicativeAttention):
    """Luong's "dot" attention, e_s = qᵀ m_s (M == Q); ``attention_size`` is unused."""

    same_widths = True

    def __init__(self, query_size: int, memory_size: int, attention_size: int = 0) -> None:
        super().__init__(query_size, memory_size, "dot")


class LuongGeneral(MultiplicativeAttention):
    """Luong's "general" attention, e_s = qᵀ W_a m_s; ``attention_size`` is unused."""

    def __init__(self, query_size: int, memory_size: int, attention_size: int = 0) -> None:
        super().__init__(query_size, memory_size, "general")


class GatedAttention(nn.Module):
    """Any attention with a gate on its context (Xu et al., "Show, attend and tell", ICML 2015,
    §4.2.1): a scalar β = σ(w_β · q + b_β) from the query scales the context,

        c, α = attend(q, m)          c' = β c

    so that a step may take little from the memory (a caption's "and", ","). The weights α are
    the wrapped attention's, unchanged (each row still sums to 1 over the real positions).

    Args:
        attention: the wrapped attention module (e.g. ``AdditiveAttention``).
        query_size: Q, the query's width.
    Parameters: the wrapped module's (``inner.*``) and gate (1, Q) with bias.
    """

    def __init__(self, attention: nn.Module, query_size: int) -> None:
        super().__init__()
        _check_sizes(query_size=query_size)
        self.inner = attention
        self.gate = nn.Linear(query_size, 1)
        self.queries_before_step = attention.queries_before_step
        self.uses_previous = attention.uses_previous

    def keys(self, memory: Tensor) -> Tensor:
        return self.inner.keys(memory)

    def forward(
        self,
        query: Tensor,
        memory: Tensor,
        mask: Tensor | None,
        keys: Tensor | None = None,
        **previous: Tensor,
    ) -> tuple[Tensor, Tensor]:
        c, alpha = self.inner(query, memory, mask, keys, **previous)
        beta = torch.sigmoid(self.gate(query))  # (B, 1)
        return beta * c, alpha

    def attend_all(
        self, queries: Tensor, memory: Tensor, mask: Tensor | None, keys: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Many queries (B, T, Q) at once, for an attention that has ``attend_all``."""
        c, alpha = self.inner.attend_all(queries, memory, mask, keys)
        return torch.sigmoid(self.gate(queries)) * c, alpha


def doubly_stochastic_penalty(alpha: Tensor, steps: Tensor | None = None) -> Tensor:
    """Xu et al. 2015's doubly stochastic regulariser, Σ_i (1 − Σ_t α_ti)², per sequence.

    Each step's weights sum to 1 over the positions i; this pushes every position's weights,
    summed over the steps, towards 1 too: the decoder is encouraged to look at every part of
    the memory at some step rather than at one part throughout.

    Args:
        alpha: (T, B, S) attention weights of T decoder steps.
        steps: (T, B) bool, True at the real steps (not padding); None: all are real.

    Returns:
        (B,) the penalty of each sequence.
    """
    if steps is not None:
        alpha = alpha * steps.unsqueeze(-1).to(alpha.dtype)
    return (1.0 - alpha.sum(0)).pow(2).sum(-1)


# The one list of attention kinds: each name and its class, built as cls(Q, M, attention_size).
ATTENTION: dict[str, type[nn.Module]] = {
    "bahdanau": AdditiveAttention,
    "location": LocationAttention,
    "luong-dot": LuongDot,
    "luong-general": LuongGeneral,
}
KINDS = tuple(ATTENTION)  # the names, for messages and choices


def _check_sizes(**sizes: int) -> None:
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int, got {value!r}")
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")


def make_attention(
    kind: str, query_size: int, memory_size: int, attention_size: int = 0
) -> nn.Module:
    """An attention module by name (a key of ``ATTENTION``)."""
    if kind not in ATTENTION:
        raise ValueError(f"attention must be one of {', '.join(KINDS)}, got {kind!r}")
    return ATTENTION[kind](query_size, memory_size, attention_size)
