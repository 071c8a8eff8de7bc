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
        state: a tensor (B, ...), None, an object with its own ``select_rows(index)``
            (``rnnkit.kernels.attention_step.Projected``), or tuples/lists/NamedTuples of them.
        index: (N,) int64 row indices.

    Returns:
        The same structure with every tensor ``t.index_select(0, index)`` (and every
        object's ``select_rows(index)``).
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(0, index.to(state.device))
    if hasattr(state, "select_rows"):  # a part that selects its own rows
        return state.select_rows(index)
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
    early_stop: bool = True,
) -> list[list[tuple[list[int], float]]]:
    """Beam search for B sequences at once: the ``beam_width`` best prefixes are kept per
    sequence at every step; a prefix ending in <eos> is finished and ranked by
    log p(Y) / lp(|Y|) (``length_penalty``; |Y| counts <eos>).

    A sequence is complete when ``beam_width`` hypotheses have finished, or after ``max_len``
    steps (its open prefixes then count as finished). With ``beam_width`` 1 this is greedy
    decoding.

    ``early_stop`` (exact): a sequence also stops as soon as its ``n_best`` best finished
    hypotheses score at least the bound u = max_k s_k / max(lp(t + 1), lp(max_len + 1)) over
    its open prefixes' log-probabilities s_k ≤ 0 (extending a prefix only lowers s, and lp is
    monotone in the length, so no later hypothesis can score above u): the returned n-best are
    those the full search returns. A stopped or complete sequence leaves the batch (its rows of
    the state are dropped with ``select_rows``), so the steps cost what the open sequences
    need. ``early_stop=False`` runs every sequence until it is complete, all rows to the end.

    Args:
        step_fn: ``step_fn(token_ids (N,), state) -> (logits (N, V), state)``; it is called with
            N = A · beam_width rows for the A sequences still open, beam k of the a-th at row
            a · beam_width + k.
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
            (default ``select_rows``). Row a·K + k is only ever replaced by a row of the same
            sequence a, so parts that are the same for all K beams of a sequence (an encoder's
            memory) may be returned as they are: ``Seq2Seq.reorder_state`` does that.
        early_stop: stop each sequence once its n-best cannot change (above), and drop it.

    Returns:
        For each of the B sequences, ``n_best`` pairs (token ids without <bos>/<eos>, score),
        best first; score = log p(Y) / lp(|Y|).
    """
    _check_decode_options(max_len, beam_width, n_best)
    B, K = batch_size, beam_width
    Kc = 1  # prefixes per sequence: one (<bos>) at the first step, then K
    scores = torch.zeros(B, 1, dtype=torch.float64, device=device)
    prefixes = torch.zeros(B, 1, 0, dtype=torch.long)  # on the CPU, as the bookkeeping
    y = torch.full((B,), bos_id, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    active = torch.arange(B)  # the sequences still open, in the order of the rows
    with torch.no_grad():
        for t in range(max_len):
            logits, state = _step(step_fn, y, state)
            A, last = len(active), t == max_len - 1
            logp = torch.log_softmax(logits.double(), dim=-1).view(A, Kc, -1)
            V = logp.shape[-1]
            total = (scores.unsqueeze(-1) + logp).view(A, Kc * V)
            top, flat = total.topk(min(2 * K, Kc * V), dim=-1)  # (A, 2K): enough to keep K open
            top, flat = top.cpu(), flat.cpu()  # a few numbers a sequence: chosen on the CPU
            if top.shape[1] < K:  # fewer candidates than beams (a tiny vocabulary): dead ones
                pad = K - top.shape[1]
                top = torch.cat([top, top.new_full((A, pad), -math.inf)], dim=1)
                flat = torch.cat([flat, flat.new_zeros(A, pad)], dim=1)
            k, v = flat.div(V, rounding_mode="floor"), flat.remainder(V)
            ends = (v == eos_id) | last  # these candidates finish a hypothesis
            done_before = torch.tensor([len(finished[b]) for b in active.tolist()])
            # candidates are taken best first until K are kept open or the sequence completes
            taken = (
                (top > -math.inf)
                & ((done_before.unsqueeze(1) + exclusive_cumsum(ends)) < K)
                & (exclusive_cumsum(~ends) < K)
            )
            done_now = (taken & ends).nonzero().tolist()
            if done_now:  # Python numbers: a tensor's element access costs microseconds
                act, kl, vl, tl = active.tolist(), k.tolist(), v.tolist(), top.tolist()
                for a, j in done_now:
                    kk, vv = kl[a][j], vl[a][j]
                    seq = prefixes[a, kk].tolist() + ([] if vv == eos_id else [vv])
                    norm = tl[a][j] / length_penalty(len(seq) + 1, alpha)
                    finished[act[a]].append((norm, seq))
            if last:
                break
            # the kept open candidates first (in rank order), dead rows (score -inf) after
            kept = taken & ~ends
            order = torch.sort((~kept).to(torch.int8), dim=1, stable=True).indices[:, :K]
            alive = kept.gather(1, order)
            rows = torch.arange(A).unsqueeze(1) * Kc + k.gather(1, order)
            rows = torch.where(alive, rows, torch.arange(A).unsqueeze(1) * Kc)
            tokens = torch.where(alive, v.gather(1, order), eos_id)
            scores = torch.where(alive, top.gather(1, order), -math.inf)
            rows, tokens = rows.view(-1), tokens.view(-1)
            index = rows.to(device)
            # the first step widens each sequence's one row to K: every part of the state moves
            state = (reorder or select_rows)(state, index) if Kc == K else select_rows(state, index)
            y = tokens.to(device)
            prefixes = torch.cat([prefixes.view(A * Kc, -1)[rows], tokens.unsqueeze(1)], dim=1)
            Kc = K
            prefixes = prefixes.view(A, K, -1)
            scores = scores.to(device)
            keep = open_sequences(
                active, finished, scores, K, n_best, early_stop, t, max_len, alpha
            )
            if not keep.any():
                break
            if early_stop and not keep.all():
                active, prefixes = active[keep], prefixes[keep]
                scores = scores[keep.to(scores.device)]
                rows = (keep.nonzero() * K + torch.arange(K)).view(-1).to(device)
                state, y = select_rows(state, rows), y[rows]
    results = []
    for b in range(B):
        ranked = sorted(finished[b], key=lambda h: -h[0])[:n_best]
        results.append([(seq, norm) for norm, seq in ranked])
    return results


def exclusive_cumsum(mask: Tensor) -> Tensor:
    """How many of the earlier entries of each row are True."""
    counts = mask.long().cumsum(dim=1)
    return counts - mask.long()


def open_sequences(active, finished, scores, K, n_best, early_stop, t, max_len, alpha) -> Tensor:
    """(A,) bool: which active sequences go on: not complete (K finished), some prefix alive,
    and (with ``early_stop``) an open prefix that could still beat the n_best-th finished."""
    best_open = scores.max(dim=1).values.tolist()
    widest = max(length_penalty(t + 2, alpha), length_penalty(max_len + 1, alpha))
    keep = []
    for b, s in zip(active.tolist(), best_open, strict=True):
        done = finished[b]
        go = len(done) < K and s > -math.inf
        if go and early_stop and len(done) >= n_best:
            norms = [norm for norm, _ in done]
            nth = max(norms) if n_best == 1 else sorted(norms, reverse=True)[n_best - 1]
            go = nth < s / widest
        keep.append(go)
    return torch.tensor(keep, dtype=torch.bool)
