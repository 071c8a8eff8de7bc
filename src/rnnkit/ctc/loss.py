"""The CTC loss: ``torch.nn.functional.ctc_loss`` behind checks that fail in one line.

Connectionist temporal classification (Graves et al. 2006) scores a label sequence
``l = (l_1..l_L)`` against per-frame distributions ``y_t(k)`` over the C symbols (the labels
plus a blank) by summing over every alignment (path) ``π = (π_1..π_T)`` that collapses to it
(``B``: merge repeats, then drop blanks):

    p(l | x) = Σ_{π : B(π) = l} Π_t y_t(π_t),        loss = -log p(l | x).

A path must put a blank between two equal adjacent labels, so an input of T frames can carry
a target only if ``T >= L + R``, R the number of adjacent repeats in it. The sum itself is
torch's (the forward-backward recursion over the 2L+1 states of the blank-extended target);
this module only makes impossible inputs one clear ``ValueError`` naming the argument.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("mean", "sum", "none")


def check_log_probs(log_probs: Tensor, name: str = "log_probs") -> tuple[int, int, int]:
    """(T, B, C) of a floating tensor of per-frame log-probabilities, else a ValueError."""
    if not isinstance(log_probs, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (T, B, C), got {type(log_probs).__name__}")
    if log_probs.dim() != 3:
        raise ValueError(f"{name} must have shape (T, B, C), got {tuple(log_probs.shape)}")
    if not log_probs.is_floating_point():
        raise ValueError(f"{name} must be a floating tensor, got {log_probs.dtype}")
    T, B, C = log_probs.shape
    if C < 1:
        raise ValueError(f"{name} must have at least one symbol (the blank), got C = {C}")
    return T, B, C


def check_blank(blank: int, C: int) -> int:
    if isinstance(blank, bool) or not isinstance(blank, int) or not 0 <= blank < C:
        raise ValueError(f"blank must be an integer in [0, {C}), got {blank!r}")
    return blank


def as_lengths(lengths, B: int, T: int, name: str = "input_lengths") -> Tensor:
    """``lengths`` as an int64 CPU tensor (B,) with values in [0, T]; None means all T."""
    if lengths is None:
        return torch.full((B,), T, dtype=torch.long)
    t = torch.as_tensor(lengths)
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must hold integers, got {t.dtype}")
    t = t.detach().to("cpu", torch.long).reshape(-1) if t.dim() <= 1 else t
    if t.dim() != 1 or len(t) != B:
        raise ValueError(f"{name} must have shape ({B},), got {tuple(t.shape)}")
    if B and (t.min() < 0 or t.max() > T):
        bad = int(((t < 0) | (t > T)).nonzero()[0, 0])
        raise ValueError(f"{name}[{bad}] = {int(t[bad])} is outside [0, {T}]")
    return t


def pad_targets(targets, target_lengths, B: int) -> tuple[Tensor, Tensor]:
    """Targets as padded (B, S) int64 on CPU plus their lengths (B,).

    Accepted: a list of B label sequences (lengths optional); a padded (B, S) integer tensor
    with ``target_lengths``; or the 1-D concatenation of all targets with ``target_lengths``
    (torch's two layouts).
    """
    if not isinstance(targets, Tensor):
        if not isinstance(targets, Sequence) or isinstance(targets, str):
            raise ValueError(f"targets must be a tensor or a list of label lists, got {targets!r}")
        if len(targets) != B:
            raise ValueError(
                f"targets must hold one label list per batch item ({B}), got {len(targets)}"
            )
        seqs = [torch.as_tensor(list(s), dtype=torch.long) for s in targets]
        lens = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        if target_lengths is not None and not torch.equal(
            as_lengths(target_lengths, B, 1 << 62, "target_lengths"), lens
        ):
            raise ValueError("target_lengths disagrees with the lengths of the target lists")
        padded = torch.zeros(B, int(lens.max()) if B else 0, dtype=torch.long)
        for b, s in enumerate(seqs):
            padded[b, : len(s)] = s
        return padded, lens
    if targets.is_floating_point() or targets.dtype == torch.bool:
        raise ValueError(f"targets must hold integer labels, got {targets.dtype}")
    t = targets.detach().to("cpu", torch.long)
    if target_lengths is None:
        if t.dim() != 2:
            raise ValueError("target_lengths is needed unless targets is a list or (B, S) tensor")
        return t, torch.full((B,), t.shape[1], dtype=torch.long)
    if t.dim() == 2:
        if t.shape[0] != B:
            raise ValueError(f"targets must have shape ({B}, S), got {tuple(t.shape)}")
        return t, as_lengths(target_lengths, B, t.shape[1], "target_lengths")
    if t.dim() != 1:
        raise ValueError(f"targets must be 1-D (concatenated) or (B, S), got {tuple(t.shape)}")
    lens = as_lengths(target_lengths, B, len(t), "target_lengths")
    if int(lens.sum()) != len(t):
        raise ValueError(
            f"target_lengths must sum to len(targets) = {len(t)} for concatenated targets, "
            f"got {int(lens.sum())}"
        )
    padded = torch.zeros(B, int(lens.max()) if B else 0, dtype=torch.long)
    for b, s in enumerate(torch.split(t, lens.tolist())):
        padded[b, : len(s)] = s
    return padded, lens


def required_frames(padded: Tensor, lens: Tensor) -> Tensor:
    """Frames a target needs: its length plus its adjacent repeats (a blank between each)."""
    if padded.shape[1] < 2:
        return lens.clone()
    pos = torch.arange(1, padded.shape[1])
    repeats = (padded[:, 1:] == padded[:, :-1]) & (pos[None, :] < lens[:, None])
    return lens + repeats.sum(1)


def check_targets(padded: Tensor, lens: Tensor, C: int, blank: int) -> None:
    """Labels in [0, C) and never the blank (over the real part of each target)."""
    mask = torch.arange(padded.shape[1])[None, :] < lens[:, None]
    bad = mask & ((padded < 0) | (padded >= C) | (padded == blank))
    if bad.any():
        b, s = (int(i) for i in bad.nonzero()[0])
        v = int(padded[b, s])
        what = "the blank" if v == blank else f"outside [0, {C})"
        raise ValueError(f"targets[{b}][{s}] = {v} is {what} (blank = {blank}, C = {C})")


def ctc_loss(
    log_probs: Tensor,
    targets,
    input_lengths=None,
    target_lengths=None,
    blank: int = 0,
    reduction: str = "mean",
    zero_infinity: bool = False,
) -> Tensor:
    """The CTC loss -log p(targets | x), checked, then computed by ``F.ctc_loss``.

    Args:
        log_probs: (T, B, C) log-softmax outputs, time-major (as torch's).
        targets: a list of B label lists; or a (B, S) padded integer tensor; or the 1-D
            concatenation of the targets (both with ``target_lengths``). Labels are in
            [0, C) and never ``blank``.
        input_lengths: (B,) frames per item in [0, T]; None: all T.
        target_lengths: (B,) labels per item; None for a list (or a full (B, S) tensor).
        blank: the blank's index.
        reduction: "mean" (each loss divided by its target length, then the batch mean: torch's),
            "sum", or "none" (a (B,) tensor).
        zero_infinity: False: a target its input cannot carry (``len + repeats > frames``) is a
            ValueError naming the item; True: such items give loss 0 and gradient 0 (torch's
            ``zero_infinity``), for training on data with a few impossible items.

    Returns:
        The loss (a scalar, or (B,) for ``reduction="none"``), differentiable in ``log_probs``.
    """
    T, B, C = check_log_probs(log_probs)
    blank = check_blank(blank, C)
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    in_lens = as_lengths(input_lengths, B, T)
    padded, tgt_lens = pad_targets(targets, target_lengths, B)
    check_targets(padded, tgt_lens, C, blank)
    need = required_frames(padded, tgt_lens)
    short = need > in_lens
    if short.any() and not zero_infinity:
        b = int(short.nonzero()[0, 0])
        raise ValueError(
            f"targets[{b}] needs {int(need[b])} frames ({int(tgt_lens[b])} labels + "
            f"{int(need[b] - tgt_lens[b])} repeats, each repeat needing a blank between) but "
            f"input_lengths[{b}] = {int(in_lens[b])}; pass zero_infinity=True to zero such items"
        )
    if padded.shape[1] == 0:  # torch wants at least one column
        padded = torch.zeros(B, 1, dtype=torch.long)
    device = log_probs.device
    return F.ctc_loss(
        log_probs,
        padded.to(device),
        in_lens.to(device),
        tgt_lens.to(device),
        blank=blank,
        reduction=reduction,
        zero_infinity=zero_infinity,
    )
