"""Scheduled sampling (Bengio et al. 2015): the probability of feeding the decoder the true
previous token (teacher forcing) rather than its own prediction, as training goes on.

    eps_i = max(eps_min, 1 - i / steps)     linear: decays to eps_min over ``steps`` steps
    eps_i = k ** i                          exponential, k < 1
    eps_i = k / (k + exp(i / k))            inverse sigmoid, k >= 1 (slow start, then a drop)
    eps_i = 1                               teacher forcing throughout;  0: always free-running

Used by the decoders of rnnkit.seq2seq and by ``rnnkit lab teacher-forcing``.
"""

from __future__ import annotations

import math

from rnnkit.errors import UserError

KINDS = ("teacher", "free", "linear", "exponential", "inverse_sigmoid")


def check_schedule(kind: str, k: float, steps: int, eps_min: float = 0.0) -> None:
    """One-line errors for impossible schedules (named after the option)."""
    if kind not in KINDS:
        raise UserError(f"schedule: unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if kind == "linear" and steps < 1:
        raise UserError(f"schedule: linear decay needs steps >= 1, got {steps}")
    if kind == "exponential" and not 0.0 < k < 1.0:
        raise UserError(f"schedule: exponential decay needs 0 < k < 1, got {k}")
    if kind == "inverse_sigmoid" and k < 1.0:
        raise UserError(f"schedule: inverse sigmoid needs k >= 1, got {k}")
    if not 0.0 <= eps_min <= 1.0:
        raise UserError(f"schedule: eps_min must be in [0, 1], got {eps_min}")


def teacher_forcing_prob(
    step: int, kind: str = "teacher", *, k: float = 1.0, steps: int = 1, eps_min: float = 0.0
) -> float:
    """Probability of feeding the true previous token at training step ``step`` (0-based)."""
    check_schedule(kind, k, steps, eps_min)
    if kind == "teacher":
        return 1.0
    if kind == "free":
        return 0.0
    if kind == "linear":
        eps = 1.0 - step / steps
    elif kind == "exponential":
        eps = k**step
    else:  # inverse sigmoid; exp overflows past ~709, where the probability is 0 anyway
        z = step / k
        eps = 0.0 if z > 700 else k / (k + math.exp(z))
    return max(eps_min, min(1.0, eps))
