"""Choosing the next token from logits z (shape (B, V)): the policies of the decoding loop.

- greedy: argmax_v z_v.
- temperature τ: sample from softmax(z / τ); τ → 0 tends to greedy, τ = 1 is the model's own
  distribution, τ > 1 flattens it (Ackley, Hinton & Sejnowski, "A learning algorithm for
  Boltzmann machines", 1985; used for text by Graves, "Generating sequences with recurrent
  neural networks", 2013).
- top-k: keep the k most probable tokens (Fan, Lewis & Dauphin, "Hierarchical neural story
  generation", 2018).
- top-p, nucleus sampling: keep the smallest set of most probable tokens whose total
  probability is at least p (Holtzman, Buys, Du, Forbes & Choi, "The curious case of neural text
  degeneration", ICLR 2020).

Filters apply in that order (temperature, then top-k, then top-p on what top-k kept), as in
Hugging Face ``transformers``' logits warpers; the dropped tokens get logit -inf, so the softmax
of the filtered logits is the kept tokens' distribution renormalised.

A policy is a callable ``choose(logits (B, V)) -> token ids (B,)``: ``Greedy()`` or
``Sample(temperature, top_k, top_p, generator)``; ``policy(greedy=..., ...)`` makes one from the
loops' keyword options.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from rnnkit.errors import UserError

Choose = Callable[[Tensor], Tensor]
"""``choose(logits (B, V)) -> (B,) int64 token ids``: how the loop picks the next token."""

# Probabilities reach the sampler in float32, good to ~1e-7; a cumulative mass within this of p
# counts as having reached p, so that the nucleus boundary does not hinge on rounding (the
# distribution [0.5, 0.3, 0.15, 0.05] with p = 0.8 keeps two tokens, however 0.5 + 0.3 rounds).
TOP_P_TOLERANCE = 1e-6


def check_sampling_options(
    temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None
) -> None:
    """Raise a one-line ``UserError`` naming the first bad option; return None if all are good.

    Valid: a finite temperature > 0, an integer top_k ≥ 1, a top_p in (0, 1]; None disables
    top-k or top-p.
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, numbers.Real)
        or not temperature > 0  # also catches NaN
    ):
        raise UserError(f"temperature must be > 0 (use greedy decoding for 0), got {temperature!r}")
    if math.isinf(temperature):
        raise UserError(f"temperature must be finite, got {temperature!r}")
    if top_k is not None and (
        isinstance(top_k, bool) or not isinstance(top_k, numbers.Integral) or top_k < 1
    ):
        raise UserError(f"top_k must be an integer >= 1, got {top_k!r}")
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, numbers.Real) or not 0 < top_p <= 1
    ):
        raise UserError(f"top_p must be in (0, 1], got {top_p!r}")


def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[-1] < 1:
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(f"logits must be a (B, V) tensor with V >= 1, got {shape}")


def filter_logits(
    logits: Tensor,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
) -> Tensor:
    """Temperature-scale the logits, then keep the top-k and the top-p nucleus; drop the rest.

    Args:
        logits: (B, V) unnormalised log-probabilities.
        temperature: τ > 0; the logits are divided by it.
        top_k: keep the k largest logits of each row (all V if k ≥ V). Exactly k are kept: at a
            tie on the boundary the lower token id wins.
        top_p: keep the smallest set of most probable tokens (of softmax(z / τ), after top-k)
            whose total probability is ≥ p, inclusive (to within ``TOP_P_TOLERANCE`` = 1e-6):
            with probabilities [0.5, 0.3, 0.15, 0.05] and p = 0.8 the first two are kept. The
            most probable token is always kept; ties in probability rank the lower token id
            first; p = 1 keeps every token.

    Returns:
        A new (B, V) tensor: z / τ where kept, -inf where dropped. Its softmax is the
        distribution to sample from.
    """
    _check_logits(logits)
    check_sampling_options(temperature, top_k, top_p)
    x = logits if logits.is_floating_point() else logits.float()
    z = x / temperature  # a new tensor
    if temperature < 1 and bool((torch.isinf(z) & torch.isfinite(x)).any()):
        # A tiny τ overflowed z to ±inf, whose softmax is NaN: shift each row by its maximum
        # first (the distribution is the same), in float64 (τ may be below float32's range),
        # so that the likeliest tokens stay at 0 and the rest go to -inf at worst.
        x64 = x.double()
        z = ((x64 - x64.amax(-1, keepdim=True)) / temperature).to(x.dtype)
    V = z.shape[-1]
    if top_k is not None and top_k < V:
        # A stable sort ranks equal logits by token id, so the cut is deterministic.
        order = torch.sort(z, dim=-1, descending=True, stable=True).indices  # (B, V)
        z = z.scatter(-1, order[:, top_k:], -math.inf)
    if top_p is not None and top_p < 1:
        probs = torch.softmax(z.double(), dim=-1)  # float64: the cut compares sums of many terms
        sorted_probs, order = torch.sort(probs, dim=-1, descending=True, stable=True)
        cumulative = sorted_probs.cumsum(-1)
        ahead = torch.cat([torch.zeros_like(cumulative[:, :1]), cumulative[:, :-1]], dim=-1)
        # A token is in the nucleus iff the mass ranked ahead of it has not yet reached p.
        drop_sorted = ahead >= top_p - TOP_P_TOLERANCE
        drop_sorted[:, 0] = False  # at least one token, the most probable
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        z = z.masked_fill(drop, -math.inf)
    return z


def choose_next(
    logits: Tensor,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The next token of each row: the argmax, or a sample from the filtered distribution.

    Args:
        logits: (B, V).
        greedy: take argmax_v z_v (the first one at a tie). The sampling options cannot change
            the argmax and are then ignored, not checked (so ``temperature=0`` is allowed).
        temperature, top_k, top_p: as in ``filter_logits``.
        generator: the random source of ``torch.multinomial``, for reproducible samples; it must
            live on the logits' device.

    Returns:
        (B,) int64 token ids, on the logits' device.
    """
    _check_logits(logits)
    choose = policy(
        greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    )
    return choose(logits)


class Greedy:
    """The argmax of each row (the first one at a tie)."""

    def __call__(self, logits: Tensor) -> Tensor:
        _check_logits(logits)
        return logits.argmax(dim=-1)

    def __repr__(self) -> str:
        return "Greedy()"


@dataclass(frozen=True)
class Sample:
    """A sample from the filtered distribution (``filter_logits``). The options are checked when
    the policy is made, so a bad one fails before the first step. ``generator``: the random
    source of ``torch.multinomial``, on the logits' device."""

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    generator: torch.Generator | None = None

    def __post_init__(self) -> None:
        check_sampling_options(self.temperature, self.top_k, self.top_p)

    def __call__(self, logits: Tensor) -> Tensor:
        z = filter_logits(logits, temperature=self.temperature, top_k=self.top_k, top_p=self.top_p)
        probs = torch.softmax(z.float(), dim=-1)  # (B, V)
        return torch.multinomial(probs, 1, generator=self.generator).squeeze(1)


def policy(
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Choose:
    """``Greedy()`` if ``greedy`` (the sampling options are then ignored, not checked), else
    ``Sample(temperature, top_k, top_p, generator)``."""
    return Greedy() if greedy else Sample(temperature, top_k, top_p, generator)
