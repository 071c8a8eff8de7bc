"""The one autoregressive loop, and scoring a sequence, one step at a time with carried state.

A recurrent model generates autoregressively: feed a token, get logits over the vocabulary and
the new state, choose the next token, feed it back. The prefix is never re-run, because the state
already summarises it (char-rnn ``sample.lua``; min-char-rnn ``sample``); that is what makes an
RNN's generation O(T) where a windowed Transformer's ``generate()`` (nanoGPT) re-reads the context.

``generate`` is that loop; the choice of the next token is its ``choose`` policy
(``rnnkit.decoding.choose``: greedy, or sampling with temperature, top-k, top-p). Language models
continue a prompt for a fixed length (``sample_batch``, ``sample_sequence``); encoder-decoders
start from <bos> and stop each sequence at <eos> (``decode_batch``). Beam search, which keeps
several prefixes, is ``rnnkit.decoding.beam``.

The step function is the whole interface to the model:
``step_fn(token_ids (B,), state) -> (logits (B, V), state)``. For an embedding, a stacked
``rnnkit.LSTM`` and a linear head it is three lines (see ``tests/test_decoding.py``). Put the
model in ``eval()`` mode first (dropout); these loops run under ``torch.no_grad``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from rnnkit.decoding.choose import Choose, policy
from rnnkit.errors import UserError

StepFn = Callable[[Tensor, Any], tuple[Tensor, Any]]
"""``step_fn(token_ids (B,), state) -> (logits (B, V), state)``: the model advanced one token."""


def _as_ids(ids: Sequence[int] | Tensor, name: str, dims: int) -> Tensor:
    """Token ids as an int64 tensor of ``dims`` dimensions (on the input's device, if a tensor)."""
    if isinstance(ids, Tensor):
        t = ids.long()
    else:
        try:
            t = torch.tensor(ids, dtype=torch.long)
        except (TypeError, ValueError) as e:  # ragged lists, non-integers
            raise UserError(
                f"{name} must be {'a list' if dims == 1 else 'lists'} of token ids "
                f"of equal length, got {str(e).splitlines()[0]}"
            ) from None
    if t.dim() != dims:
        raise ValueError(f"{name} must have {dims} dimension(s), got shape {tuple(t.shape)}")
    return t


def _check_length(length: int) -> None:
    if isinstance(length, bool) or not isinstance(length, numbers.Integral) or length < 0:
        raise UserError(f"length must be an integer >= 0, got {length!r}")


def _step(step_fn: StepFn, token_ids: Tensor, state: Any) -> tuple[Tensor, Any]:
    logits, state = step_fn(token_ids, state)
    if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != len(token_ids):
        shape = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
        raise ValueError(
            f"step_fn must return logits of shape (B, V) with B = {len(token_ids)}, got {shape}"
        )
    return logits, state


def generate(
    step_fn: StepFn,
    state: Any,
    prime: Tensor,
    length: int,
    choose: Choose,
    *,
    eos_id: int | None = None,
) -> Tensor:
    """The choose-and-feed-back loop: feed the prime, then choose a token and feed it back.

    The prime is fed one token at a time (all B rows at once); the logits after its last token
    give the first chosen token; each chosen token is fed back, except the last. ``step_fn`` is
    called P + L - 1 times for a prime of length P and L tokens out.

    Args:
        step_fn: ``step_fn(token_ids (B,), state) -> (logits (B, V), state)``.
        state: the initial state for a batch of B (None if step_fn makes its own).
        prime: (B, P) int64 token ids, P ≥ 1; the chosen ids live on its device.
        length: at most this many tokens per row, ≥ 0.
        choose: ``choose(logits (B, V)) -> (B,)`` ids: ``Greedy()``, ``Sample(...)`` or any.
        eos_id: if given, a row that has chosen <eos> is finished: it gets <eos> from then on,
            and the loop stops early once every row is finished.

    Returns:
        (B, L) int64 token ids without the prime; L = ``length``, or fewer if every row
        finished earlier.
    """
    out = list(generate_steps(step_fn, state, prime, length, choose, eos_id=eos_id))
    if not out:
        return torch.empty(prime.shape[0], 0, dtype=torch.long, device=prime.device)
    return torch.stack(out, dim=1)  # (B, L)


def generate_steps(
    step_fn: StepFn,
    state: Any,
    prime: Tensor,
    length: int,
    choose: Choose,
    *,
    eos_id: int | None = None,
) -> Iterator[Tensor]:
    """``generate`` one token at a time: an iterator of the (B,) ids chosen at each step, each
    yielded as soon as it is chosen (``generate`` stacks them), so the same steps and draws.

    ``length`` is checked at the call, not at the first ``next``. Gradients are off inside each
    step only, never across a ``yield``: grad mode is per thread, and the consumer may call
    ``next`` from a different thread each time (a server's thread pool)."""
    _check_length(length)
    return _generate_steps(step_fn, state, prime, length, choose, eos_id)


def _generate_steps(step_fn, state, prime, length, choose, eos_id) -> Iterator[Tensor]:
    if length == 0:
        return
    done = torch.zeros(prime.shape[0], dtype=torch.bool, device=prime.device)
    with torch.no_grad():
        for x in prime.unbind(1):  # (B,) per step
            logits, state = _step(step_fn, x, state)
    for t in range(length):
        with torch.no_grad():
            y = choose(logits).to(prime.device)
            if eos_id is not None:
                y = y.masked_fill(done, eos_id)
                done = done | (y == eos_id)
        yield y
        if t == length - 1 or (eos_id is not None and bool(done.all())):
            return
        with torch.no_grad():
            logits, state = _step(step_fn, y, state)


def sample_batch(
    step_fn: StepFn,
    state: Any,
    prime_ids: Sequence[Sequence[int]] | Tensor,
    length: int,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Continue B prompts of equal length by ``length`` tokens each, all in one batch.

    The prompts are fed one token at a time (all B at once); the logits after the last prompt
    token give the first sampled token, and each sampled token is fed back. ``step_fn`` is called
    P + length - 1 times for prompts of length P (the last sampled token is not fed).

    Args:
        step_fn: ``step_fn(token_ids (B,), state) -> (logits (B, V), state)``. The token ids it
            receives live on the prompts' device (the CPU for lists).
        state: the initial state for a batch of B, passed to the first call as is (None if
            step_fn makes its own).
        prime_ids: (B, P) token ids, P ≥ 1.
        length: how many tokens to generate, ≥ 0.
        greedy, temperature, top_k, top_p, generator: as in ``choose_next``.

    Returns:
        (B, length) int64 token ids, on the prompts' device, without the prompts.
    """
    prime = _as_ids(prime_ids, "prime_ids", 2)
    if prime.shape[1] == 0:
        raise UserError(
            "the prime must hold at least one token (e.g. a newline or <eos>), got none"
        )
    _check_length(length)
    choose = policy(  # checks the options before the first step, not after the prime
        greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    )
    return generate(step_fn, state, prime, length, choose)


def sample_sequence(
    step_fn: StepFn,
    state: Any,
    prime_ids: Sequence[int] | Tensor,
    length: int,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> list[int]:
    """Continue one prompt by ``length`` tokens: the autoregressive loop with carried state.

    The prime is fed one token at a time, each exactly once; its last logits give the first
    sampled token; each sampled token is then fed back. ``step_fn`` is called
    len(prime_ids) + length - 1 times (not at all for length 0).

    Args:
        step_fn: ``step_fn(token_ids (1,), state) -> (logits (1, V), state)``.
        state: the initial state for a batch of 1 (None if step_fn makes its own).
        prime_ids: the prompt, at least one token id; if there is no natural prompt, start
            from a newline or <eos>.
        length: how many tokens to generate, ≥ 0.
        greedy, temperature, top_k, top_p, generator: as in ``choose_next``.

    Returns:
        The ``length`` generated token ids, without the prime.
    """
    return list(
        sample_sequence_steps(
            step_fn,
            state,
            prime_ids,
            length,
            greedy=greedy,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )
    )


def sample_sequence_steps(
    step_fn: StepFn,
    state: Any,
    prime_ids: Sequence[int] | Tensor,
    length: int,
    *,
    greedy: bool = False,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> Iterator[int]:
    """``sample_sequence`` one token at a time: an iterator of the ``length`` generated ids,
    each yielded as soon as it is drawn (``sample_sequence`` is its list). The prime, length
    and options are checked at the call, before the first ``next`` (see ``generate_steps``)."""
    prime = _as_ids(prime_ids, "prime_ids", 1).unsqueeze(0)
    if prime.shape[1] == 0:
        raise UserError(
            "the prime must hold at least one token (e.g. a newline or <eos>), got none"
        )
    _check_length(length)
    choose = policy(
        greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    )
    return (int(y[0]) for y in generate_steps(step_fn, state, prime, length, choose))


def sequence_log_prob(
    step_fn: StepFn,
    state: Any,
    ids: Sequence[int] | Tensor,
    first_logits: Tensor | None = None,
) -> tuple[float, list[float]]:
    """The natural-log probability of a sequence under the model, one token at a time.

    Without ``first_logits``, ids[0] is the given context and ids[1:] are scored:
    log p(ids[1:] | ids[0]) = Σ_{t≥1} log softmax(z_t)[ids[t]], where z_t is the step's output
    after feeding ids[t-1]. With ``first_logits`` (the model's logits before ids[0], e.g. after
    a prime), every id is scored, ids[0] by ``first_logits``. ``step_fn`` is called
    len(ids) - 1 times either way (the last id is not fed).

    Bits per token of the scored ids: -total / ln 2 / len(per_token).

    Args:
        step_fn: ``step_fn(token_ids (1,), state) -> (logits (1, V), state)``.
        state: the initial state for a batch of 1 (None if step_fn makes its own).
        ids: the token ids; at least one without ``first_logits``.
        first_logits: (1, V) or (V,) logits predicting ids[0], or None.

    Returns:
        (total, per_token): the summed log-probability (a float, ≤ 0) and one log-probability
        per scored token, in order; computed in float64.
    """
    t_ids = _as_ids(ids, "ids", 1)
    if first_logits is None and len(t_ids) == 0:
        raise UserError("ids must hold at least one token (the context of the first scored one)")
    per_token: list[float] = []

    def score(logits: Tensor, token: int) -> None:
        V = logits.shape[-1]
        if not 0 <= token < V:
            raise UserError(f"token id {token} is out of range for a vocabulary of {V}")
        per_token.append(torch.log_softmax(logits.reshape(-1).double(), dim=-1)[token].item())

    tokens = t_ids.tolist()
    with torch.no_grad():
        if first_logits is not None:
            shape = tuple(first_logits.shape)
            if not (len(shape) == 1 or (len(shape) == 2 and shape[0] == 1)):
                raise ValueError(f"first_logits must be (1, V) or (V,), got {shape}")
            if tokens:
                score(first_logits, tokens[0])
        for t in range(len(tokens) - 1):
            logits, state = _step(step_fn, t_ids[t : t + 1], state)
            score(logits, tokens[t + 1])
    return math.fsum(per_token), per_token


def _check_decode_options(max_len: int, beam_width: int = 1, n_best: int = 1) -> None:
    if isinstance(max_len, bool) or not isinstance(max_len, numbers.Integral) or max_len < 1:
        raise UserError(f"max_len must be an integer >= 1, got {max_len!r}")
    if isinstance(beam_width, bool) or not isinstance(beam_width, int) or beam_width < 1:
        raise UserError(f"beam width must be an integer >= 1, got {beam_width!r}")
    if isinstance(n_best, bool) or not isinstance(n_best, int) or not 1 <= n_best <= beam_width:
        raise UserError(
            f"n_best must be an integer in [1, beam width {beam_width}], got {n_best!r}"
        )


def decode_batch(
    step_fn: StepFn,
    state: Any,
    batch_size: int,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    greedy: bool = True,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> list[list[int]]:
    """Greedy decoding or sampling of B sequences at once, each from <bos> to <eos>.

    ``generate`` from a prime of <bos>, stopping each sequence at <eos>.

    Args:
        step_fn: ``step_fn(token_ids (B,), state) -> (logits (B, V), state)``.
        state: the initial state for the batch (e.g. an encoder's output).
        batch_size: B.
        bos_id, eos_id: the start and end tokens.
        max_len: at most this many tokens per sequence (<eos> included).
        greedy: argmax at every step; False: sample (``temperature``, ``top_k``, ``top_p``,
            ``generator`` as in ``choose_next``).
        device: where the token ids live (the model's device).

    Returns:
        B lists of token ids, without <bos> and <eos>.
    """
    _check_decode_options(max_len)
    choose = policy(
        greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p, generator=generator
    )
    prime = torch.full((batch_size, 1), bos_id, dtype=torch.long, device=device)
    tokens = generate(step_fn, state, prime, max_len, choose, eos_id=eos_id).tolist()  # (B, L)
    return [row[: row.index(eos_id)] if eos_id in row else row for row in tokens]
