"""Beam search for encoder-decoders: the ``beam_width`` best prefixes of each sequence, kept at
every step, from <bos> to <eos> (Sutskever, Vinyals & Le 2014; the length penalty of Wu et al.
2016, GNMT).

The state may hold anything whose tensors are batch-first (B, ...): beam search repeats it for
the beams and reorders it with ``select_rows`` (or the model's own ``reorder``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from rnnkit.decoding.loop import StepFn, _check_decode_options, _step


def select_rows(state: Any, index: Tensor) -> Any:
    """The rows ``index`` of every tensor in a (nested tuple/list/NamedTuple) state; None stays.

    Args:
        state: a tensor (B, ...), None, or tuples/lists/NamedTuples of them.
        index: (N,) int64 row indices.

    Returns:
        The same structure with every tensor ``t.index_select(0, index)``.
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(0, index.to(state.device))
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return type(state)(*(select_rows(s, index) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(select_rows(s, index) for s in state)
    raise TypeError(f"select_rows: cannot index a state part of type {type(state).__name__}")


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. 2016 (GNMT): lp(Y) = ((5 + |Y|) / 6)^α; α = 0 ranks by the raw sum of log p."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(
    step_fn: StepFn,
    state: Any,
    batch_size: int,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    beam_width: int = 5,
    n_best: int = 1,
    alpha: float = 0.0,
    device: torch.device | str | None = None,
    reorder: Callable[[Any, Tensor], Any] | None = None,
) -> list[list[tuple[list[int], float]]]:
    """Beam search for B sequences at once: the ``beam_width`` best prefixes are kept per
    sequence at every step; a prefix ending in <eos> is finished and ranked by
    log p(Y) / lp(|Y|) (``length_penalty``; |Y| counts <eos>).

    A sequence is complete when ``beam_width`` hypotheses have finished, or after ``max_len``
    steps (its open prefixes then count as finished). With ``beam_width`` 1 this is greedy
    decoding.

    Args:
        step_fn: ``step_fn(token_ids (N,), state) -> (logits (N, V), state)``; it is called with
            N = B · beam_width rows, beam k of sequence b at row b · beam_width + k.
        state: the initial state for B rows, batch-first; it is repeated beam_width times
            (``select_rows``) and reordered as beams are chosen.
        batch_size: B.
        bos_id, eos_id: the start and end tokens.
        max_len: at most this many tokens per hypothesis (<eos> included).
        beam_width: K, prefixes kept per sequence.
        n_best: hypotheses returned per sequence (≤ K), best first.
        alpha: the length-penalty exponent α (0: none; ~0.6-1: favour longer outputs).
        device: where the token ids live.
        reorder: ``reorder(state, index)`` -> the state's rows ``index`` after each step
            (default ``select_rows``). Row b·K + k is only ever replaced by a row of the same
            sequence b, so parts that are the same for all K beams of a sequence (an encoder's
            memory) may be returned as they are: ``Seq2Seq.reorder_state`` does that.

    Returns:
        For each of the B sequences, ``n_best`` pairs (token ids without <bos>/<eos>, score),
        best first; score = log p(Y) / lp(|Y|).
    """
    _check_decode_options(max_len, beam_width, n_best)
    B, K = batch_size, beam_width
    state = select_rows(state, torch.arange(B, device=device).repeat_interleave(K))
    scores = torch.full((B, K), -math.inf, dtype=torch.float64, device=device)
    scores[:, 0] = 0.0  # one live prefix (<bos>) per sequence at the start
    prefixes = torch.zeros(B, K, 0, dtype=torch.long, device=device)
    y = torch.full((B * K,), bos_id, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    complete = [False] * B
    with torch.no_grad():
        for t in range(max_len):
            logits, state = _step(step_fn, y, state)
            logp = torch.log_softmax(logits.double(), dim=-1).view(B, K, -1)
            V = logp.shape[-1]
            total = (scores.unsqueeze(-1) + logp).view(B, K * V)
            top, flat = total.topk(min(2 * K, K * V), dim=-1)  # (B, 2K): enough to keep K open
            top, flat = top.tolist(), flat.tolist()
            rows, tokens, new_scores = [], [], []
            last = t == max_len - 1
            for b in range(B):
                kept = []  # (row, token, score) of the open prefixes kept for sequence b
                for value, index in zip(top[b], flat[b], strict=True):
                    if complete[b] or len(kept) == K or value == -math.inf:
                        break
                    k, v = divmod(index, V)
                    if v == eos_id or last:
                        seq = prefixes[b, k].tolist() + ([] if v == eos_id else [v])
                        norm = value / length_penalty(len(seq) + 1, alpha)
                        finished[b].append((norm, seq))
                        complete[b] = len(finished[b]) >= K
                    else:
                        kept.append((b * K + k, v, value))
                # a complete sequence, or too few continuations: dead rows (score -inf) fill in
                kept += [(b * K, eos_id, -math.inf)] * (K - len(kept))
                for row, v, value in kept:
                    rows.append(row)
                    tokens.append(v)
                    new_scores.append(value)
            if all(complete) or last:
                break
            index = torch.tensor(rows, dtype=torch.long, device=device)
            state = (reorder or select_rows)(state, index)
            y = torch.tensor(tokens, dtype=torch.long, device=device)
            prefixes = torch.cat([prefixes.view(B * K, -1)[index], y.unsqueeze(1)], dim=1)
            prefixes = prefixes.view(B, K, -1)
            scores = torch.tensor(new_scores, dtype=torch.float64, device=device).view(B, K)
    results = []
    for b in range(B):
        ranked = sorted(finished[b], key=lambda h: -h[0])[:n_best]
        results.append([(seq, norm) for norm, seq in ranked])
    return results
