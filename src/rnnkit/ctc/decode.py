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
stepped once per frame for all new prefixes of all items. Items run longest first, a finished
item's rows dropped. A prefix is known by an identity hashed from its labels (``_child``), so
"beam j is beam i extended by c" is one comparison of arrays; the labels are read back at the
end through the per-frame (source beam, new label) history. One item alone (B = 1) runs the
same search over Python floats (``_search_one``), where numpy's per-call cost would dominate.
"""

from __future__ import annotations

import heapq
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


# Prefix identities: two hashes mod primes below 2^31, packed in one int64 (h1 * M2 + h2), of
# the label sequence read as base-P numbers; the empty prefix is 0. Two different prefixes of
# length <= n share an identity with probability <= (n / 2^31)^2 (each hash is a polynomial
# of degree n in a random-looking base over a prime field), about 1e-13 for n = 1000.
_M1, _M2, _P1, _P2 = 2147483629, 2147483587, 911382323, 972663749


def _child(node: np.ndarray, label: np.ndarray) -> np.ndarray:
    """The identity of each prefix ``node`` extended by ``label``."""
    h1 = (node // _M2 * _P1 + label + 1) % _M1
    h2 = (node % _M2 * _P2 + label + 1) % _M2
    return h1 * _M2 + h2


def _check_search_args(beam_width, n_best, lm, alpha, beta, prune_logp, beam_prune, top_k):
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
    for name, v in (("prune_logp", prune_logp), ("beam_prune_logp", beam_prune)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v > 0):
            raise ValueError(f"{name} must be None or a log-probability <= 0, got {v!r}")


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
    beam_prune_logp: float | None = -10.0,
    top_k: int | None = None,
) -> list[list[tuple[list[int], float]]]:
    """CTC prefix beam search in log space, batched; optional language-model shallow fusion.

    The search runs on the CPU in float64 (``log_probs`` is copied there once, from any
    device); a language model runs wherever its weights are.

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
        beam_prune_logp: per frame, candidates scoring more than this below the frame's best
            are dropped even if the beam has room (pyctcdecode's ``beam_prune_logp``): fewer
            prefixes to carry and, with an LM, fewer LM steps; None keeps up to beam_width.
        top_k: per frame, extend only the top_k most probable labels; None: all.

    Returns:
        Per item, up to n_best ``(labels, score)``, best first, where ``score = log P(labels |
        x) + α·log P_lm(labels) + β·len(labels)`` (just ``log P(labels | x)`` when α = β = 0):
        exact when no prefix of the result was pruned from the beam.
    """
    T, B, C = check_log_probs(log_probs)
    blank = check_blank(blank, C)
    lens = as_lengths(lengths, B, T, "lengths").numpy()
    _check_search_args(beam_width, n_best, lm, alpha, beta, prune_logp, beam_prune_logp, top_k)
    if B == 1:  # one item: the same search over Python floats (numpy's per-call cost dominates)
        lp1 = log_probs.detach()[: int(lens[0]), 0].to("cpu", torch.float64).numpy()
        opts = (prune_logp, beam_prune_logp, top_k)
        return [_search_one(lp1, beam_width, blank, lm, alpha, beta, n_best, *opts)]
    # Items longest first: the ones still running at frame t are rows [0, n_t), and a finished
    # item's rows are dropped from the arrays (no work on padding).
    perm = np.argsort(-lens, kind="stable")
    lens = lens[perm]
    lp = log_probs.detach().to("cpu", torch.float64).numpy()[:, perm]
    K, NEG = beam_width, -np.inf
    nonblank = np.array([k for k in range(C) if k != blank], dtype=np.int64)
    running = (np.arange(T)[:, None] < lens[None, :]).sum(1)  # n_t
    # W_t: the labels extended at frame t, the most any running item keeps
    if prune_logp is None:
        widths = np.full(T, len(nonblank))
    else:
        above = lp >= prune_logp
        above[:, :, blank] = False
        counts = np.where(np.arange(B)[None, :] < running[:, None], above.sum(2), 0)
        widths = counts.max(1) if B else np.zeros(T, dtype=np.int64)
    if top_k is not None:
        widths = np.minimum(widths, top_k)

    pb, pnb = np.full((B, K), NEG), np.full((B, K), NEG)
    pb[:, 0] = 0.0
    last, node, bpar = np.full((B, K), -1), np.full((B, K), -1), np.full((B, K), -3)
    node[:, 0], bpar[:, 0] = 0, -2  # the empty prefix (its parent -2 matches no node)
    fus = np.zeros((B, K))  # α·log P_lm + β·len of each prefix
    final = np.full((B, K), NEG)
    history: list[tuple[np.ndarray, np.ndarray]] = []  # per frame: the source beam, new label
    state, nxt = None, None
    if lm is not None:
        state, logp = lm.start(B * K)
        nxt = _lm_logp(logp, B * K, C).reshape(B, K, C)
    n = B
    for t in range(int(lens[0]) if B else 0):
        if running[t] < n:  # items that ended: their scores are final; drop their rows
            final[running[t] : n] = np.logaddexp(pb, pnb)[running[t] :] + fus[running[t] :]
            n = int(running[t])
            pb, pnb, last, node, bpar, fus = (a[:n] for a in (pb, pnb, last, node, bpar, fus))
            nxt = nxt[:n] if nxt is not None else None
        R, w = np.arange(n)[:, None], int(widths[t])
        y = lp[t, :n]
        ptot = np.logaddexp(pb, pnb)
        yl = np.where(last >= 0, y[R, last], NEG)
        npb = ptot + y[:, blank, None]
        npnb = pnb + yl
        # Merge: beam j is beam i extended by last[j]; that extension's mass joins n_t(j).
        eq = node[:, :, None] == bpar[:, None, :]  # (n, K_i, K_j)
        has = eq.any(1)
        merging = has.any()
        if merging:
            ij = eq.argmax(1)
            src = np.where(last[R, ij] == last, pb[R, ij], ptot[R, ij])
            npnb = np.logaddexp(npnb, np.where(has, src + yl, NEG))
        stay_score = np.logaddexp(npb, npnb) + fus
        if w:
            if w == len(nonblank):
                c = np.broadcast_to(nonblank, (n, w))
            else:  # the w most probable non-blank labels of each item (in no order)
                yn = y.copy()
                yn[:, blank] = NEG
                c = np.argpartition(-yn, w - 1, axis=1)[:, :w]
            cl = y[R, c]  # (n, w)
            if prune_logp is not None:
                cl = np.where(cl >= prune_logp, cl, NEG)
            rep = c[:, None, :] == last[:, :, None]  # (n, K, w): a repeat of the last label
            ext = np.where(rep, pb[:, :, None], ptot[:, :, None]) + cl[:, None, :]
            if merging:  # extensions that are beams already were merged above
                dup = np.matmul(eq.astype(np.float32), (rep & has[:, :, None]).astype(np.float32))
                ext[dup > 0] = NEG
            bonus = fus[:, :, None] + beta  # (n, K, 1), or (n, K, w) with the LM's terms
            if lm is not None:
                lmc = nxt[R[:, :, None], np.arange(K)[:, None], c[:, None, :]]
                bonus = bonus + alpha * lmc
            ext = ext.reshape(n, -1)
            allsc = np.concatenate([stay_score, (ext.reshape(n, K, w) + bonus).reshape(n, -1)], 1)
            if beam_prune_logp is not None:
                floor = allsc.max(1, keepdims=True) + beam_prune_logp
                allsc = np.where(allsc >= floor, allsc, NEG)
            idx = np.argpartition(-allsc, K - 1, axis=1)[:, :K]
            stay = idx < K
            i = np.where(stay, idx, (idx - K) // w)
            newc = np.where(stay, -1, c[R, (idx - K) % w])
            valid = allsc[R, idx]
            pb = np.where(stay, npb[R, i], NEG)
            pnb = np.concatenate([npnb, ext], 1)[R, idx]
            step = beta if lm is None else beta + alpha * lmc.reshape(n, -1)[R, (idx - K) % (K * w)]
            fus = fus[R, i] + np.where(stay, 0.0, step)
            parent = node[R, i]
            last = np.where(stay, last[R, i], newc)
            bpar = np.where(stay, bpar[R, i], parent)
            node = np.where(stay, parent, _child(parent, newc))
        else:  # nothing extends: every beam stays where it is
            i, newc, valid = np.broadcast_to(np.arange(K), (n, K)), np.full((n, K), -1), None
            pb, pnb = npb, npnb
            if beam_prune_logp is not None:
                floor = stay_score.max(1, keepdims=True) + beam_prune_logp
                valid = np.where(stay_score >= floor, stay_score, NEG)
        if valid is not None and valid.min() == NEG:
            valid = valid > NEG
            newc = np.where(valid, newc, -1)
            pb, pnb = np.where(valid, pb, NEG), np.where(valid, pnb, NEG)
            node, bpar = np.where(valid, node, -1), np.where(valid, bpar, -3)
            last, fus = np.where(valid, last, -1), np.where(valid, fus, 0.0)
        history.append((i, newc))
        if lm is not None and (newc >= 0).any():
            rows = (R * K + i).reshape(-1)
            state, logp = lm.advance(state, rows, newc.reshape(-1))
            nxt = _lm_logp(logp, n * K, C).reshape(n, K, C)
    if B:
        final[:n] = np.logaddexp(pb, pnb)[:n] + fus[:n]
    return _n_best(final, history, lens, perm, n_best)


def _n_best(final, history, lens, perm, n_best) -> list[list[tuple[list[int], float]]]:
    """Read the n best prefixes of each item back through the per-frame (source, label)."""
    B = len(lens)
    top = np.argsort(-final, axis=1, kind="stable")[:, :n_best]  # (B, N)
    ptr = top.copy()
    labels = np.full((B, top.shape[1], len(history)), -1)
    for t in range(len(history) - 1, -1, -1):
        src, new = history[t]
        m = len(src)  # items running at frame t
        rows = np.arange(m)[:, None]
        labels[:m, :, t] = new[rows, ptr[:m]]
        ptr[:m] = src[rows, ptr[:m]]
    out: list = [None] * B
    for b in range(B):
        hyps = []
        for j, k in enumerate(top[b]):
            if np.isfinite(final[b, k]):
                seq = labels[b, j]
                hyps.append((seq[seq >= 0].tolist(), float(final[b, k])))
        out[perm[b]] = hyps
    return out


def _lae(a: float, b: float) -> float:
    """log(e^a + e^b) of two Python floats."""
    if a < b:
        a, b = b, a
    return a if b == -math.inf else a + math.log1p(math.exp(b - a))


def _search_one(lp, K, blank, lm, alpha, beta, n_best, prune_logp, beam_prune, top_k):
    """``beam_search`` of one item, lp (T, C) float64: the same recursion and selection with a
    dict of prefixes (tuples) per frame, over only the beams that survive ``beam_prune``."""
    T, C = lp.shape
    NEG = -math.inf
    keep = lp >= prune_logp if prune_logp is not None else np.ones((T, C), dtype=bool)
    keep[:, blank] = False
    counts = keep.sum(1)
    if top_k is not None:
        for t in np.flatnonzero(counts > top_k):  # only the top_k most probable labels
            top = np.argpartition(-np.where(keep[t], lp[t], NEG), top_k - 1)[:top_k]
            keep[t] = False
            keep[t, top] = True
    _, labels = np.nonzero(keep)
    cands = [c.tolist() for c in np.split(labels, np.cumsum(keep.sum(1))[:-1])] if T else []
    y = lp.tolist()
    state, nxt, fused = None, None, lm is not None
    if fused:
        state, logp = lm.start(1)
        nxt = _lm_logp(logp, 1, C)
    log1p, exp = math.log1p, math.exp  # _lae inlined below: it is most of the work
    beams = [((), 0.0, NEG, 0.0, 0, None)]  # (prefix, b, n, fusion terms, LM row, parent)
    for t in range(T):
        yt, yb, ct = y[t], y[t][blank], cands[t]
        new: dict = {}  # prefix -> [b, n, fusion, LM row, label the LM must read or -1, parent]
        old: dict = {}  # prefix -> (b, b ⊕ n) at t - 1
        scored = []
        for prefix, pb, pnb, _, _, _ in beams:
            if pb >= pnb:
                old[prefix] = (pb, pb if pnb == NEG else pb + log1p(exp(pnb - pb)))
            else:
                old[prefix] = (pb, pnb if pb == NEG else pnb + log1p(exp(pb - pnb)))
        for prefix, _, pnb, fus, row, parent in beams:
            nb, nn = old[prefix][1] + yb, NEG
            if prefix:
                e = prefix[-1]
                nn = pnb + yt[e]
                up = old.get(parent)
                if up is not None:  # merge: the parent's extension by e (never pruned)
                    v = (up[0] if len(prefix) > 1 and prefix[-2] == e else up[1]) + yt[e]
                    if v > nn:
                        nn, v = v, nn
                    if v != NEG:
                        nn += log1p(exp(v - nn))
            new[prefix] = [nb, nn, fus, row, -1, parent]
            if nb >= nn:
                total = nb if nn == NEG else nb + log1p(exp(nn - nb))
            else:
                total = nn if nb == NEG else nn + log1p(exp(nb - nn))
            scored.append((total + fus, prefix))
        for prefix, (pb, tot) in old.items():
            e = prefix[-1] if prefix else -1
            fus, row = new[prefix][2], new[prefix][3]
            for c in ct:
                v = (pb if c == e else tot) + yt[c]
                q = prefix + (c,)
                if v > NEG and q not in old:  # (a beam already: merged above)
                    f = fus + beta + (alpha * float(nxt[row, c]) if fused else 0.0)
                    new[q] = [NEG, v, f, row, c, prefix]
                    scored.append((v + f, q))
        if beam_prune is not None:
            floor = max(scored)[0] + beam_prune
            scored = [x for x in scored if x[0] >= floor]
        top = heapq.nlargest(K, scored) if len(scored) > K else scored
        chosen = [(q, new[q]) for sc, q in top if sc > NEG]
        if fused and any(e[4] >= 0 for _, e in chosen):
            rows = np.array([e[3] for _, e in chosen])
            state, logp = lm.advance(state, rows, np.array([e[4] for _, e in chosen]))
            nxt = _lm_logp(logp, len(chosen), C)
            beams = [(q, e[0], e[1], e[2], r, e[5]) for r, (q, e) in enumerate(chosen)]
        else:
            beams = [(q, e[0], e[1], e[2], e[3], e[5]) for q, e in chosen]
    final = [(_lae(pb, pnb) + fus, list(prefix)) for prefix, pb, pnb, fus, _, _ in beams]
    final.sort(key=lambda x: -x[0])
    return [(labels, score) for score, labels in final[:n_best] if score > NEG]
