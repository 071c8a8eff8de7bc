"""Forced alignment: the most probable CTC path that collapses to a given target (Viterbi).

With the blank-extended target ``z = (∅, l_1, ∅, l_2, ..., l_L, ∅)`` (S = 2L + 1 states) and
``y_t(k)`` the frame log-probabilities, the best path score ending in state s at frame t is

    δ_1(0) = y_1(∅),  δ_1(1) = y_1(l_1),  δ_1(s) = -∞ for s >= 2
    δ_t(s) = y_t(z_s) + max(δ_{t-1}(s), δ_{t-1}(s-1), δ_{t-1}(s-2) if z_s ≠ ∅ and z_s ≠ z_{s-2})

(the CTC forward recursion with max in place of the sum); the path ends in ``z_{S-1}`` or
``z_{S-2}`` and is read back through the argmax pointers. O(T·S) per item, batched over items.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from rnnkit.ctc.loss import (
    as_lengths,
    check_blank,
    check_log_probs,
    check_targets,
    pad_targets,
    required_frames,
)


def _viterbi(lp: np.ndarray, z: np.ndarray, S: np.ndarray, lens: np.ndarray) -> list[list[int]]:
    """lp (T, B, C), z (B, Smax) extended targets, S (B,) their sizes, lens (B,) frames."""
    T, B, _ = lp.shape
    Smax = z.shape[1]
    NEG = -np.inf
    skip = np.zeros((B, Smax), dtype=bool)  # may come from s-2
    skip[:, 2:] = (z[:, 2:] != z[:, :-2]) & (np.arange(2, Smax) % 2 == 1)
    inside = np.arange(Smax)[None, :] < S[:, None]
    delta = np.full((B, Smax), NEG)
    back = np.zeros((max(T, 1), B, Smax), dtype=np.int8)  # 0: stay, 1: from s-1, 2: from s-2
    if T:
        emit = np.take_along_axis(lp[0], z, 1)
        delta[:, :2] = emit[:, :2]
        delta = np.where(inside, delta, NEG)
    for t in range(1, int(lens.max()) if B else 0):
        emit = np.take_along_axis(lp[t], z, 1)
        prev1 = np.concatenate([np.full((B, 1), NEG), delta[:, :-1]], 1)
        prev2 = np.concatenate([np.full((B, min(2, Smax)), NEG), delta[:, : max(Smax - 2, 0)]], 1)
        prev2 = np.where(skip, prev2, NEG)
        cand = np.stack([delta, prev1, prev2])  # (3, B, Smax)
        arg = cand.argmax(0)
        new = np.where(inside, np.take_along_axis(cand, arg[None], 0)[0] + emit, NEG)
        act = (t < lens)[:, None]
        back[t] = np.where(act, arg, 0)
        delta = np.where(act, new, delta)
    out = []
    for b in range(B):
        n, s_end = int(lens[b]), int(S[b])
        if n == 0:
            out.append([])
            continue
        ends = [s for s in (s_end - 1, s_end - 2) if s >= 0]
        s = max(ends, key=lambda s: delta[b, s])
        path = [0] * n
        for t in range(n - 1, -1, -1):
            path[t] = int(z[b, s])
            s -= int(back[t, b, s])
        out.append(path)
    return out


def forced_align(log_probs: Tensor, targets, blank: int = 0, lengths=None, target_lengths=None):
    """The Viterbi alignment of ``targets``: a label (or the blank) per frame.

    Args:
        log_probs: (T, C) for one item, or (T, B, C) for a batch.
        targets: one label sequence (with (T, C)), or B of them (a list, or a padded (B, S)
            tensor as for ``ctc_loss``); labels in [0, C), never the blank.
        blank: the blank's index.
        lengths: (B,) frames per item (batched form only); None: all T.
        target_lengths: (B,) with a padded tensor of targets (batched form only).

    Returns:
        The path: ``list[int]`` of T symbols (one item), or per item ``lengths[b]`` symbols.
        Collapsed (``rnnkit.ctc.collapse``) it is the target; among such paths its probability
        is the highest. A target its frames cannot carry is a ValueError.
    """
    single = isinstance(log_probs, Tensor) and log_probs.dim() == 2
    if single:
        log_probs, targets = log_probs[:, None, :], [list(targets)]
        if lengths is not None or target_lengths is not None:
            raise ValueError("lengths are for the batched form (log_probs of shape (T, B, C))")
    T, B, C = check_log_probs(log_probs)
    blank = check_blank(blank, C)
    lens = as_lengths(lengths, B, T, "lengths")
    padded, tlens = pad_targets(targets, target_lengths, B)
    check_targets(padded, tlens, C, blank)
    need = required_frames(padded, tlens)
    if (need > lens).any():
        b = int((need > lens).nonzero()[0, 0])
        where = "" if single else f"[{b}]"
        raise ValueError(
            f"targets{where} needs {int(need[b])} frames (labels plus a blank between repeats) "
            f"but has {int(lens[b])}"
        )
    Smax = 2 * padded.shape[1] + 1
    z = torch.full((B, Smax), blank, dtype=torch.long)
    z[:, 1::2] = padded
    z = torch.where(torch.arange(Smax)[None, :] < 2 * tlens[:, None] + 1, z, blank)
    lp = log_probs.detach().to("cpu", torch.float64).numpy()
    paths = _viterbi(lp, z.numpy(), (2 * tlens + 1).numpy(), lens.numpy())
    return paths[0] if single else paths
