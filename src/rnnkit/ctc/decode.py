"""CTC decoders on per-frame log-probabilities (T, B, C): best path (greedy) and the prefix
beam search with optional shallow fusion of a language model.

Collapsing ``B``: merge adjacent repeats, then drop blanks ("aa-ab" -> "aab" with "-" the blank).

The prefix beam search (Graves 2012, sec. 7.5; Hannun et al. 2014) keeps, for each prefix ``l``
in the beam, the log-probabilities of the frames so far ending in a blank, ``b_t(l)``, and in
its last label, ``n_t(l)``; with ``y_t(k)`` the frame's log-probabilities, ``⊕`` log-add,
``l+c`` the prefix extended by label c and ``e`` the last label of ``l``:

    b_t(l)   = (b_{t-1}(l) ⊕ n_{t-1}(l)) + y_t(blank)
    n_t(l)   = n_{t-1}(l) + y_t(e)  ⊕  [l = l'+e, l' in the beam] X_{t-1}(l') + y_t(e)
    n_t(l+c) = X_{t-1}(l) + y_t(c),   X(l) = b(l) if c = e (a repeat needs a blank) else b ⊕ n

and ``log P(l | x_{1..t}) = b_t(l) ⊕ n_t(l)``. The beam keeps the ``beam_width`` prefixes of
highest ``log P(l | x) + α·log P_lm(l) + β·|l|`` (shallow fusion; ``P_lm(l)`` the product of
the language model's conditionals ``P_lm(l_i | l_<i)``), so with a beam wider than the number
of reachable prefixes the result is exact.

Vectorised over the batch and the beam: per frame, every (beam, label) extension is one entry
of a (B, K, W) array, W the labels kept at that frame (the ``top_k`` most probable non-blank
labels with log-probability >= ``prune_logp``, as pyctcdecode prunes); the language model is
stepped once per frame for all new prefixes of all items. Prefixes are nodes of a trie, so a
prefix reached again is recognised by its node.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from rnnkit.ctc.loss import as_lengths, check_blank, check_log_probs


def collapse(path, blank: int = 0) -> list[int]:
    """B(π): a frame path collapsed (repeats merged, then blanks removed)."""
    out: list[int] = []
    prev = None
    for k in path:
        k = int(k)
        if k != prev and k != blank:
            out.append(k)
        prev = k
    return out


def greedy_decode(log_probs: Tensor, lengths=None, blank: int = 0) -> list[list[int]]:
    """Best-path decoding: the most probable symbol per frame, collapsed.

    ``argmax_π Π_t y_t(π_t)`` is found frame by frame (π*_t = argmax_k y_t(k)); its collapse
    B(π*) is returned. It is not always the most probable *label sequence* (that sums over
    paths; see ``beam_search``), but it is exact for the best path and costs one argmax.

    Args:
        log_probs: (T, B, C) per-frame log-probabilities (or any monotone scores, e.g. logits).
        lengths: (B,) frames per item in [0, T]; None: all T.
        blank: the blank's index.

    Returns:
        Per batch item, its labels (blank never among them).
    """
    T, B, C = check_log_probs(log_probs)
    blank = check_blank(blank, C)
    lens = as_lengths(lengths, B, T, "lengths")
    best = log_probs.detach().argmax(-1).cpu()  # (T, B)
    prev = torch.cat([torch.full((1, B), -1, dtype=best.dtype), best[:-1]])
    keep = (best != prev) & (best != blank) & (torch.arange(T)[:, None] < lens[None, :])
    return [best[keep[:, b], b].tolist() for b in range(B)]


def _take(a: np.ndarray, idx: np.ndarray) -> np.ndarray:
    return np.take_along_axis(a, idx, 1)


class _Trie:
    """Prefixes as nodes: node 0 is the empty prefix; (parent, label) -> child, one id each."""

    def __init__(self) -> None:
        self.parent, self.label, self.children = [-2], [-1], {}

    def child(self, node: int, label: int) -> int:
        key = (node, label)
        found = self.children.get(key)
        if found is None:
            found = self.children[key] = len(self.parent)
            self.parent.append(node)
            self.label.append(label)
        return found

    def labels(self, node: int) -> list[int]:
        out = []
        while node > 0:
            out.append(self.label[node])
            node = self.parent[node]
        return out[::-1]


def _check_search_args(beam_width, n_best, lm, alpha, beta, prune_logp, top_k) -> None:
    for name, v in (("beam_width", beam_width), ("n_best", n_best)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {v!r}")
    if n_best > beam_width:
        raise ValueError(f"n_best must be <= beam_width ({beam_width}), got {n_best}")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
    for name, v in (("alpha", alpha), ("beta", beta)):
        if not isinstance(v, int | float) or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number, got {v!r}")
    if alpha != 0 and lm is None:
        raise ValueError("alpha weighs a language model: pass lm= or leave alpha = 0")
    if lm is not None and not (hasattr(lm, "start") and hasattr(lm, "advance")):
        raise ValueError(f"lm must have start(n) and advance(state, rows, labels), got {lm!r}")
    if prune_logp is not None and (not isinstance(prune_logp, int | float) or prune_logp > 0):
        raise ValueError(f"prune_logp must be None or a log-probability <= 0, got {prune_logp!r}")


def _lm_logp(logp, n: int, C: int) -> np.ndarray:
    out = np.asarray(logp.detach().cpu() if isinstance(logp, Tensor) else logp, dtype=np.float64)
    if out.shape != (n, C):
        raise ValueError(f"the lm must return log-probabilities of shape ({n}, {C}), got "
                         f"{out.shape}")  # fmt: skip
    return out


def beam_search(
    log_probs: Tensor,
    lengths=None,
    beam_width: int = 10,
    blank: int = 0,
    lm=None,
    alpha: float = 0.0,
    beta: float = 0.0,
    n_best: int = 1,
    *,
    prune_logp: float | None = -10.0,
    top_k: int | None = None,
) -> list[list[tuple[list[int], float]]]:
    """CTC prefix beam search in log space, batched; optional language-model shallow fusion.

    Args:
        log_probs: (T, B, C) per-frame log-probabilities (log-softmax outputs).
        lengths: (B,) frames per item in [0, T]; None: all T.
        beam_width: K, the prefixes kept per item and frame.
        blank: the blank's index.
        lm: None, or a language model over the C labels (the blank's column is ignored) with
            ``start(n) -> (state, logp (n, C))``: n copies of the state at the start of a line
            and ``logp[r, c] = log P_lm(c | start)``; and ``advance(state, rows, labels) ->
            (state, logp (m, C))``: a new state of m rows, row r being old row ``rows[r]``
            advanced by label ``labels[r]`` (``-1``: not advanced, a copy), with its
            next-label log-probabilities. ``rnnkit.ctc.CharLM`` is one.
        alpha: the language model's weight α; beta: the length bonus β per label.
        n_best: hypotheses returned per item (<= beam_width; fewer if fewer exist).
        prune_logp: per frame, labels with a log-probability below this are not extended
            (pyctcdecode's ``token_min_logp``); None keeps all. Staying in a prefix (blank or
            repeat) and merging into it are never pruned.
        top_k: per frame, extend only the top_k most probable labels; None: all.

    Returns:
        Per item, up to n_best ``(labels, score)``, best first, where ``score = log P(labels |
        x) + α·log P_lm(labels) + β·len(labels)`` (just ``log P(labels | x)`` when α = β = 0):
        exact when no prefix of the result was pruned from the beam.
    """
    T, B, C = check_log_probs(log_probs)
    blank = check_blank(blank, C)
    lens = as_lengths(lengths, B, T, "lengths").numpy()
    _check_search_args(beam_width, n_best, lm, alpha, beta, prune_logp, top_k)
    lp = log_probs.detach().to("cpu", torch.float64).numpy()
    K, NEG = beam_width, -np.inf
    nonblank = np.array([k for k in range(C) if k != blank], dtype=np.int64)
    W = len(nonblank) if top_k is None else min(top_k, len(nonblank))
    lpn = lp[:, :, nonblank]
    order = np.argsort(-lpn, axis=2, kind="stable")[:, :, :W]
    cands, cand_lp = nonblank[order], np.take_along_axis(lpn, order, 2)  # (T, B, W)
    if prune_logp is not None:
        cand_lp = np.where(cand_lp >= prune_logp, cand_lp, NEG)
    widths = np.isfinite(cand_lp).sum(2).max(1) if B and W else np.zeros(T, dtype=np.int64)

    pb, pnb = np.full((B, K), NEG), np.full((B, K), NEG)
    pb[:, 0] = 0.0
    last, node, bpar = np.full((B, K), -1), np.full((B, K), -1), np.full((B, K), -3)
    node[:, 0], bpar[:, 0] = 0, -2  # the empty prefix (its parent -2 matches no node)
    fus = np.zeros((B, K))  # α·log P_lm + β·len of each prefix
    trie, rowsK = _Trie(), np.arange(B)[:, None] * K
    state, nxt = None, None
    if lm is not None:
        state, logp = lm.start(B * K)
        nxt = _lm_logp(logp, B * K, C).reshape(B, K, C)
    for t in range(int(lens.max()) if B else 0):
        act = (t < lens)[:, None]
        y, w = lp[t], int(widths[t])
        ptot = np.logaddexp(pb, pnb)
        yl = np.where(last >= 0, _take(y, np.maximum(last, 0)), NEG)
        npb = ptot + y[:, blank, None]
        npnb = pnb + yl
        # Merge: beam j is beam i extended by last[j]; that extension's mass joins n_t(j).
        eq = node[:, :, None] == bpar[:, None, :]  # (B, K_i, K_j)
        has, ij = eq.any(1), eq.argmax(1)
        src = np.where(_take(last, ij) == last, _take(pb, ij), _take(ptot, ij))
        npnb = np.logaddexp(npnb, np.where(has, src + yl, NEG))
        npb, npnb = np.where(act, npb, pb), np.where(act, npnb, pnb)
        c, cl = cands[t, :, :w], cand_lp[t, :, :w]  # (B, w)
        ext = np.where(c[:, None, :] == last[:, :, None], pb[:, :, None], ptot[:, :, None])
        ext = ext + cl[:, None, :]  # (B, K, w)
        # extensions that are already beams were merged above: not candidates again
        match = (c[:, None, :] == last[:, :, None]) & has[:, :, None]  # (B, K_j, w)
        dup = np.matmul(eq.astype(np.float32), match.astype(np.float32)) > 0
        ext = np.where(dup | ~act[:, :, None], NEG, ext)
        bonus = fus[:, :, None] + beta
        if lm is not None:
            lmc = np.take_along_axis(nxt, np.broadcast_to(c[:, None, :], ext.shape), 2)
            bonus = bonus + alpha * lmc
        bonus = np.broadcast_to(bonus, ext.shape)
        allsc = np.concatenate([np.logaddexp(npb, npnb) + fus, (ext + bonus).reshape(B, -1)], 1)
        if allsc.shape[1] > K:
            idx = np.argpartition(-allsc, K - 1, axis=1)[:, :K]
        else:
            idx = np.broadcast_to(np.arange(K), (B, K))
        idx = np.where(act, idx, np.arange(K))
        score, stay = _take(allsc, idx), idx < K
        e = np.maximum(idx - K, 0)
        i = np.where(stay, idx, e // max(w, 1))
        newc = np.where(stay, -1, _take(c, e % max(w, 1)) if w else -1)
        valid = np.isfinite(score)
        newc = np.where(valid, newc, -1)
        pnb_ext = _take(ext.reshape(B, -1), e) if w else np.full((B, K), NEG)
        pb, pnb = np.where(stay, _take(npb, i), NEG), np.where(stay, _take(npnb, i), pnb_ext)
        parent_node = _take(node, i)
        nb = _take(bonus.reshape(B, -1), e) if w else np.zeros((B, K))
        fus = np.where(stay, _take(fus, i), nb)
        last = np.where(stay, _take(last, i), newc)
        bpar = np.where(stay, _take(bpar, i), parent_node)
        node = parent_node.copy()
        for b, k in zip(*np.nonzero(newc >= 0), strict=True):
            node[b, k] = trie.child(int(parent_node[b, k]), int(newc[b, k]))
        pb, pnb = np.where(valid, pb, NEG), np.where(valid, pnb, NEG)
        node, bpar = np.where(valid, node, -1), np.where(valid, bpar, -3)
        fus = np.where(valid, fus, 0.0)
        if lm is not None:
            rows = (rowsK + i).reshape(-1)
            if (newc >= 0).any() or not np.array_equal(rows, np.arange(B * K)):
                state, logp = lm.advance(state, rows, newc.reshape(-1))
                nxt = _lm_logp(logp, B * K, C).reshape(B, K, C)
    final = np.logaddexp(pb, pnb) + fus
    out = []
    for b in range(B):
        best = [k for k in np.argsort(-final[b], kind="stable") if np.isfinite(final[b, k])]
        out.append([(trie.labels(int(node[b, k])), float(final[b, k])) for k in best[:n_best]])
    return out
