"""Synthetic sequence tasks, generated and seeded, of any length ``T``.

Every generator takes ``(batch, T, generator)`` with a ``torch.Generator`` that it alone draws
from, so a batch is a pure function of the generator's seed, and returns time-major inputs
``x (T, B, features)`` and targets. Baselines are functions beside them, derived exactly.

References:
    Hochreiter & Schmidhuber 1997, "Long short-term memory" (the adding problem).
    Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent neural networks" (the copy task).
    The running average, running sum and larger-total tasks are the lectures' toy RNN exercises.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _check(batch: int, T: int, min_T: int = 1) -> None:
    for name, value, low in (("batch", batch, 1), ("T", T, min_T)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


def adding(batch: int, T: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The adding problem (Hochreiter & Schmidhuber 1997, as in Arjovsky et al. 2016).

    Channel 0 holds values ``u_t ~ U[0, 1]``; channel 1 is a mask, 1 at exactly two positions
    ``p1`` (uniform in the first half, ``[0, T//2)``) and ``p2`` (uniform in the second half,
    ``[T//2, T)``), 0 elsewhere. The target is ``y = u_{p1} + u_{p2}``.

    Args:
        batch: ``B``.
        T: sequence length, at least 2.
        generator: the source of randomness (seed it for a reproducible batch).

    Returns:
        ``x`` float32 ``(T, B, 2)`` and ``y`` float32 ``(B,)``.
    """
    _check(batch, T, min_T=2)
    half = T // 2
    u = torch.rand(T, batch, generator=generator)  # (T, B)
    p1 = torch.randint(0, half, (batch,), generator=generator)
    p2 = torch.randint(half, T, (batch,), generator=generator)
    mask = torch.zeros(T, batch)
    cols = torch.arange(batch)
    mask[p1, cols] = 1.0
    mask[p2, cols] = 1.0
    y = u[p1, cols] + u[p2, cols]  # (B,)
    return torch.stack([u, mask], dim=-1), y


def adding_baseline_mse() -> float:
    """MSE of always predicting 1 on the adding problem: exactly 1/6.

    ``y = U1 + U2`` with independent ``U_i ~ U[0, 1]``, so ``E[y] = 1`` and
    ``E[(y - 1)^2] = Var(y) = Var(U1) + Var(U2) = 2 * 1/12 = 1/6`` (about 0.167), the best a
    constant can do.
    """
    return 2.0 / 12.0


# ---- the copy (memory) task ------------------------------------------------------------------
COPY_BLANK, COPY_DELIMITER = 0, 9  # symbols are 1..8
COPY_SYMBOLS, COPY_CATEGORIES, COPY_VOCAB = 10, 8, 10
COPY_NAMES = ("blank", "1", "2", "3", "4", "5", "6", "7", "8", "delimiter")  # token ids 0..9


def copy_task(batch: int, T: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The copy (memory) task of Arjovsky, Shah & Bengio 2016.

    Tokens: 0 is the blank, 1..8 the symbols, 9 the delimiter. A sequence has ``T + 20`` steps::

        input:   s1 .. s10 | T-1 blanks | delimiter | 10 blanks
        target:  T + 10 blanks                      | s1 .. s10

    where ``s1 .. s10`` are drawn uniformly from the 8 symbols. The delimiter asks for the recall;
    the outputs are blank until then.

    Args:
        batch: ``B``.
        T: the delay (blanks between the symbols and the recall, counting the delimiter), >= 1.
        generator: the source of randomness.

    Returns:
        ``x`` int64 ``(T + 20, B)`` input tokens and ``y`` int64 ``(T + 20, B)`` target tokens.
    """
    _check(batch, T)
    n = COPY_SYMBOLS
    symbols = torch.randint(1, COPY_CATEGORIES + 1, (n, batch), generator=generator)  # (10, B)
    x = torch.full((T + 2 * n, batch), COPY_BLANK, dtype=torch.long)
    y = torch.full((T + 2 * n, batch), COPY_BLANK, dtype=torch.long)
    x[:n] = symbols
    x[T + n - 1] = COPY_DELIMITER
    y[T + n :] = symbols
    return x, y


def copy_baseline_ce(T: int) -> float:
    """Cross-entropy per step (nats) of the memoryless strategy on the copy task: 10 log 8 / (T+20).

    It predicts the blank with certainty for the first ``T + 10`` steps (cross-entropy 0: the
    targets are blank there) and the uniform distribution over the 8 symbols at the 10 recall
    steps (log 8 each), averaged over all ``T + 20`` steps, as in Arjovsky et al. 2016.
    """
    _check(1, T)
    return COPY_SYMBOLS * math.log(COPY_CATEGORIES) / (T + 2 * COPY_SYMBOLS)


# ---- the lectures' toy tasks -----------------------------------------------------------------
def running_average(
    batch: int, T: int, generator: torch.Generator, a: float = 0.5
) -> tuple[Tensor, Tensor]:
    """The running (exponential) average ``y_t = x_t + a y_{t-1}``, ``y_0 = 0``, ``x_t ~ U[-1, 1]``.

    A one-unit linear Elman RNN without biases computes it exactly:
    ``h_t = w_ih x_t + w_hh h_{t-1}`` with ``w_hh = a`` and the readout ``w_ih * w_out = 1``.
    With ``a = 1`` it is the running sum.

    Returns:
        ``x`` float32 ``(T, B, 1)`` and ``y`` float32 ``(T, B, 1)``, a target at every step.
    """
    _check(batch, T)
    x = torch.rand(T, batch, 1, generator=generator) * 2 - 1
    y = torch.empty_like(x)
    prev = torch.zeros(batch, 1)
    for t, x_t in enumerate(x.unbind(0)):
        prev = x_t + a * prev
        y[t] = prev
    return x, y


def running_average_baseline_mse(T: int, a: float = 0.5) -> float:
    """MSE of always predicting 0 (the targets' mean) on ``running_average``, over all T steps.

    ``y_t = sum_{k<t} a^k x_{t-k}`` with independent ``x ~ U[-1, 1]`` (mean 0, variance 1/3), so
    ``E[y_t^2] = (1/3) sum_{k<t} a^{2k}``; the baseline is its mean over ``t = 1..T``.
    """
    _check(1, T)
    return sum(sum(a ** (2 * k) for k in range(t)) for t in range(1, T + 1)) / (3 * T)


def running_sum(batch: int, T: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """The sum of the inputs so far, ``y_t = x_1 + ... + x_t``: ``running_average`` with a = 1."""
    return running_average(batch, T, generator, a=1.0)


def running_sum_baseline_mse(T: int) -> float:
    """MSE of predicting 0 on ``running_sum``: ``E[y_t^2] = t/3``, averaged: ``(T + 1) / 6``."""
    _check(1, T)
    return (T + 1) / 6


def larger_total(batch: int, T: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Which of two input channels has the larger total so far.

    Inputs ``x_t ~ U[0, 1]^2``; the target at step t is 1 if ``sum_{k<=t} x_k[1]`` exceeds
    ``sum_{k<=t} x_k[0]``, else 0. An RNN must keep (the sign of) the running difference.

    Returns:
        ``x`` float32 ``(T, B, 2)`` and ``y`` int64 ``(T, B)`` class labels.
    """
    _check(batch, T)
    x = torch.rand(T, batch, 2, generator=generator)
    totals = x.cumsum(0)
    return x, (totals[..., 1] > totals[..., 0]).long()


def larger_total_baseline_accuracy() -> float:
    """Accuracy of any input-blind guess on ``larger_total``: the two channels are exchangeable,
    so each label has probability 1/2 at every step (ties have probability 0)."""
    return 0.5
