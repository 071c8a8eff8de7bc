"""Synthetic sequence tasks, generated and seeded, of any length ``T``.

Every generator takes ``(batch, T, generator)`` with a ``torch.Generator`` that it alone draws
from, so a batch is a pure function of the generator's seed, and returns time-major inputs
``x (T, B, features)`` and targets. Baselines are functions beside them, derived exactly.

References:
    Hochreiter & Schmidhuber 1997, "Long short-term memory" (the adding problem).
    Arjovsky, Shah & Bengio 2016, "Unitary evolution recurrent neural networks" (the copy task).
"""

from __future__ import annotations

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
