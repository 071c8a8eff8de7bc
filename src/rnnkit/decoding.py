"""Choosing the next token, and scoring a sequence, one step at a time with carried state.

A recurrent model generates autoregressively: feed a token, get logits over the vocabulary and
the new state, choose the next token, feed it back. The prefix is never re-run, because the state
already summarises it (char-rnn ``sample.lua``; min-char-rnn ``sample``); that is what makes an
RNN's generation O(T) where a windowed Transformer's ``generate()`` (nanoGPT) re-reads the context.

How the next token is chosen from logits z (shape (B, V)):

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

The step function is the whole interface to the model:
``step_fn(token_ids (B,), state) -> (logits (B, V), state)``. For an embedding, a stacked
``rnnkit.LSTM`` and a linear head it is three lines (see ``tests/test_decoding.py``). Put the
model in ``eval()`` mode first (dropout); these loops run under ``torch.no_grad``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from rnnkit.errors import UserError

StepFn = Callable[[Tensor, Any], tuple[Tensor, Any]]
"""``step_fn(token_ids (B,), state) -> (logits (B, V), state)``: the model advanced one token."""

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
    z = (logits if logits.is_floating_point() else logits.float()) / temperature  # a new tensor
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
    if greedy:
        return logits.argmax(dim=-1)
    z = filter_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p)
    probs = torch.softmax(z.float(), dim=-1)  # (B, V)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


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
    if not greedy:  # fail before the first step, not after the prime
        check_sampling_options(temperature, top_k, top_p)
    B = prime.shape[0]
    out = torch.empty(B, length, dtype=torch.long, device=prime.device)
    if length == 0:
        return out
    with torch.no_grad():
        for x in prime.unbind(1):  # (B,) per step
            logits, state = _step(step_fn, x, state)
        for t in range(length):
            x = choose_next(
                logits,
                greedy=greedy,
                temperature=temperature,
                top_k=top_k,
                top_p=top_p,
                generator=generator,
            ).to(prime.device)
            out[:, t] = x
            if t < length - 1:
                logits, state = _step(step_fn, x, state)
    return out


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
    prime = _as_ids(prime_ids, "prime_ids", 1)
    ids = sample_batch(
        step_fn,
        state,
        prime.unsqueeze(0),
        length,
        greedy=greedy,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        generator=generator,
    )
    return ids[0].tolist()


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


# ---- decoding with an end: sequence-to-sequence --------------------------------------------
# An encoder-decoder's output ends at <eos>. The loops below start every sequence from <bos>,
# stop each at <eos> (or at max_len tokens), and run all B sequences as one batch until every
# one has ended. The state may hold anything whose tensors are batch-first (B, ...): beam search
# reorders it with ``select_rows``.


def select_rows(state: Any, index: Tensor) -> Any:
    """The rows ``index`` of every tensor in a (nested tuple/list/NamedTuple) state; None stays.

    Args:
        state: a tensor (B, ...), None, or tuples/lists/NamedTuples of them.
        index: (N,) int64 row indices.

    Returns:
        The same structure with every tensor ``t.index_select(0, index)``.
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.index_select(0, index.to(state.device))
    if isinstance(state, tuple) and hasattr(state, "_fields"):  # a NamedTuple
        return type(state)(*(select_rows(s, index) for s in state))
    if isinstance(state, (tuple, list)):
        return type(state)(select_rows(s, index) for s in state)
    raise TypeError(f"select_rows: cannot index a state part of type {type(state).__name__}")


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
    if not greedy:
        check_sampling_options(temperature, top_k, top_p)
    y = torch.full((batch_size,), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    out = []
    with torch.no_grad():
        for _ in range(max_len):
            logits, state = _step(step_fn, y, state)
            y = choose_next(
                logits, greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p,
                generator=generator,
            ).to(done.device)  # fmt: skip
            y = y.masked_fill(done, eos_id)
            out.append(y)
            done = done | (y == eos_id)
            if bool(done.all()):
                break
    tokens = torch.stack(out, dim=1).tolist()  # (B, L)
    return [row[: row.index(eos_id)] if eos_id in row else row for row in tokens]


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. 2016 (GNMT): lp(Y) = ((5 + |Y|) / 6)^α; α = 0 ranks by the raw sum of log p."""
    return ((5.0 + length) / 6.0) ** alpha


def beam_search(
    step_fn: StepFn,
    state: Any,
    batch_size: int,
    *,
    bos_id: int,
    eos_id: int,
    max_len: int,
    beam_width: int = 5,
    n_best: int = 1,
    alpha: float = 0.0,
    device: torch.device | str | None = None,
    reorder: Callable[[Any, Tensor], Any] | None = None,
) -> list[list[tuple[list[int], float]]]:
    """Beam search for B sequences at once: the ``beam_width`` best prefixes are kept per
    sequence at every step; a prefix ending in <eos> is finished and ranked by
    log p(Y) / lp(|Y|) (``length_penalty``; |Y| counts <eos>).

    A sequence is complete when ``beam_width`` hypotheses have finished, or after ``max_len``
    steps (its open prefixes then count as finished). With ``beam_width`` 1 this is greedy
    decoding.

    Args:
        step_fn: ``step_fn(token_ids (N,), state) -> (logits (N, V), state)``; it is called with
            N = B · beam_width rows, beam k of sequence b at row b · beam_width + k.
        state: the initial state for B rows, batch-first; it is repeated beam_width times
            (``select_rows``) and reordered as beams are chosen.
        batch_size: B.
        bos_id, eos_id: the start and end tokens.
        max_len: at most this many tokens per hypothesis (<eos> included).
        beam_width: K, prefixes kept per sequence.
        n_best: hypotheses returned per sequence (≤ K), best first.
        alpha: the length-penalty exponent α (0: none; ~0.6-1: favour longer outputs).
        device: where the token ids live.
        reorder: ``reorder(state, index)`` -> the state's rows ``index`` after each step
            (default ``select_rows``). Row b·K + k is only ever replaced by a row of the same
            sequence b, so parts that are the same for all K beams of a sequence (an encoder's
            memory) may be returned as they are: ``Seq2Seq.reorder_state`` does that.

    Returns:
        For each of the B sequences, ``n_best`` pairs (token ids without <bos>/<eos>, score),
        best first; score = log p(Y) / lp(|Y|).
    """
    _check_decode_options(max_len, beam_width, n_best)
    B, K = batch_size, beam_width
    state = select_rows(state, torch.arange(B, device=device).repeat_interleave(K))
    scores = torch.full((B, K), -math.inf, dtype=torch.float64, device=device)
    scores[:, 0] = 0.0  # one live prefix (<bos>) per sequence at the start
    prefixes = torch.zeros(B, K, 0, dtype=torch.long, device=device)
    y = torch.full((B * K,), bos_id, dtype=torch.long, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(B)]
    complete = [False] * B
    with torch.no_grad():
        for t in range(max_len):
            logits, state = _step(step_fn, y, state)
            logp = torch.log_softmax(logits.double(), dim=-1).view(B, K, -1)
            V = logp.shape[-1]
            total = (scores.unsqueeze(-1) + logp).view(B, K * V)
            top, flat = total.topk(min(2 * K, K * V), dim=-1)  # (B, 2K): enough to keep K open
            top, flat = top.tolist(), flat.tolist()
            rows, tokens, new_scores = [], [], []
            last = t == max_len - 1
            for b in range(B):
                kept = []  # (row, token, score) of the open prefixes kept for sequence b
                for value, index in zip(top[b], flat[b], strict=True):
                    if complete[b] or len(kept) == K or value == -math.inf:
                        break
                    k, v = divmod(index, V)
                    if v == eos_id or last:
                        seq = prefixes[b, k].tolist() + ([] if v == eos_id else [v])
                        norm = value / length_penalty(len(seq) + 1, alpha)
                        finished[b].append((norm, seq))
                        complete[b] = len(finished[b]) >= K
                    else:
                        kept.append((b * K + k, v, value))
                # a complete sequence, or too few continuations: dead rows (score -inf) fill in
                kept += [(b * K, eos_id, -math.inf)] * (K - len(kept))
                for row, v, value in kept:
                    rows.append(row)
                    tokens.append(v)
                    new_scores.append(value)
            if all(complete) or last:
                break
            index = torch.tensor(rows, dtype=torch.long, device=device)
            state = (reorder or select_rows)(state, index)
            y = torch.tensor(tokens, dtype=torch.long, device=device)
            prefixes = torch.cat([prefixes.view(B * K, -1)[index], y.unsqueeze(1)], dim=1)
            prefixes = prefixes.view(B, K, -1)
            scores = torch.tensor(new_scores, dtype=torch.float64, device=device).view(B, K)
    results = []
    for b in range(B):
        ranked = sorted(finished[b], key=lambda h: -h[0])[:n_best]
        results.append([(seq, norm) for norm, seq in ranked])
    return results
