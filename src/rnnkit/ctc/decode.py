"""CTC decoders on per-frame log-probabilities (T, B, C): best path (greedy).

Collapsing ``B``: merge adjacent repeats, then drop blanks ("aa-ab" -> "aab" with "-" the blank).
"""

from __future__ import annotations

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
