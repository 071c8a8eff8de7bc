"""Scheduled sampling (Bengio, Vinyals, Jaitly & Shazeer, "Scheduled sampling for sequence
prediction with recurrent neural networks", NeurIPS 2015): what a decoder is fed back.

A network that feeds back its previous output is trained with, at each step and for each
sequence, the true previous value with probability ε and its own previous output otherwise:
ε = 1 is teacher forcing (Williams & Zipser 1989), ε = 0 free running. ε_i decays over training
step i by a schedule:

    ε_i = max(ε_min, 1 - i / steps)         linear
    ε_i = k ** i                            exponential, k < 1
    ε_i = k / (k + exp(i / k))              inverse sigmoid, k >= 1

``teacher_forcing_prob`` is the schedule (defined in ``rnnkit.train.schedules`` and re-exported
here); ``feed_back`` is the per-sequence choice. Used by ``rnnkit.seq2seq.Seq2Seq`` (tokens: the
own value is the previous step's argmax) and by ``rnnkit lab teacher-forcing`` (vectors: the own
value is the Jordan cell's differentiable output).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnnkit.train.schedules import KINDS, check_schedule, teacher_forcing_prob

__all__ = ["KINDS", "check_schedule", "feed_back", "teacher_forcing_prob"]


def feed_back(
    true: Tensor, own: Tensor, eps: float, generator: torch.Generator | None = None
) -> Tensor:
    """The value fed to the next step: per sequence (row), ``true`` with probability ε, else
    ``own``.

    Args:
        true: (B, ...) the true previous values (token ids, or vectors).
        own: the network's own previous values, the shape of ``true``; not detached here (a
            caller that must not train through them detaches them).
        eps: ε, the probability of the true value; ε ≥ 1 returns ``true`` and ε ≤ 0 ``own``,
            without drawing.
        generator: the random source of the B draws, a CPU generator (so that a run draws the
            same coins on every device).

    Returns:
        (B, ...): row b is true[b] if its draw u_b ~ U[0, 1) is < ε, else own[b].
    """
    if eps >= 1.0:
        return true
    if eps <= 0.0:
        return own
    B = true.shape[0]
    use_true = torch.rand(B, generator=generator).to(true.device) < eps  # (B,)
    return torch.where(use_true.view(B, *[1] * (true.dim() - 1)), true, own)
