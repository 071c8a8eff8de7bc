"""Scores computed from a loss, each defined once: the task reports, ``rnnkit sample --score``
and the plots call these."""

from __future__ import annotations

import math

MAX_EXPONENT = 50.0
"""The exponent of ``perplexity`` is capped here (e^50 ≈ 5.2e21): a diverged loss gives a huge
finite number, not an ``OverflowError`` (``math.exp`` overflows above ~709)."""


def perplexity(nll: float, tokens: int = 1) -> float:
    """Perplexity, e to the mean negative log-likelihood per token: exp(nll / tokens).

    Args:
        nll: the negative log-likelihood in nats, summed over ``tokens`` tokens (with
            ``tokens=1``: already a mean, e.g. a cross-entropy loss).
        tokens: how many tokens ``nll`` sums over; 0 counts as 1.

    Returns:
        exp(min(nll / tokens, 50)).
    """
    return math.exp(min(nll / max(tokens, 1), MAX_EXPONENT))


def bits_per_token(nll: float, tokens: int = 1) -> float:
    """The mean negative log-likelihood in bits: nll / tokens / ln 2 (bits per character for a
    character model).

    Args:
        nll: the negative log-likelihood in nats, summed over ``tokens`` tokens.
        tokens: how many tokens ``nll`` sums over; 0 counts as 1.

    Returns:
        Bits per token.
    """
    return nll / max(tokens, 1) / math.log(2)
