"""Decoding: the filters against their definitions, sampling against softmax, the step loop
against a counting toy model, and scoring against one batched pass of a real LSTM."""

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import rnnkit
from rnnkit.decoding import (
    Greedy,
    Sample,
    choose_next,
    decode_batch,
    filter_logits,
    generate,
    policy,
    sample_batch,
    sample_sequence,
    sequence_log_prob,
)
from rnnkit.errors import UserError

NUCLEUS = [0.5, 0.3, 0.15, 0.05]


def kept(z):
    """The kept token ids of each row, as sets."""
    return [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in z]


def log_probs(probs, order=None):
    """Logits whose softmax is ``probs``, optionally permuted (so sorting is exercised)."""
    z = torch.tensor(probs, dtype=torch.float64).log()
    return (z if order is None else z[order]).unsqueeze(0)


# ---- filter_logits ----------------------------------------------------------------------------


def test_temperature_divides_and_its_zero_limit_is_greedy():
    logits = torch.randn(6, 10)
    assert_close(filter_logits(logits, temperature=2.0), logits / 2)
    greedy = choose_next(logits, greedy=True)
    top = [
        torch.softmax(filter_logits(logits, temperature=T), -1).max(-1).values
        for T in (1.0, 0.3, 0.1, 1e-3)
    ]
    for hotter, colder in zip(top, top[1:], strict=False):
        assert (colder >= hotter).all()  # the mode's probability grows as τ falls ...
    assert_close(top[-1], torch.ones(6))  # ... to one
    g = torch.Generator().manual_seed(1)
    for _ in range(20):
        assert torch.equal(choose_next(logits, temperature=1e-3, generator=g), greedy)


def test_top_k_keeps_exactly_the_k_largest():
    logits = torch.randn(5, 12)
    for k in range(1, 13):
        z = filter_logits(logits, top_k=k)
        finite = torch.isfinite(z)
        assert (finite.sum(-1) == k).all()
        assert_close(z[finite], logits[finite])  # kept logits are untouched
        smallest_kept = logits.masked_fill(~finite, math.inf).min(-1).values
        largest_dropped = logits.masked_fill(finite, -math.inf).max(-1).values
        assert (smallest_kept >= largest_dropped).all()
    assert torch.equal(filter_logits(logits, top_k=100), logits)  # k ≥ V: no-op


def test_top_k_ties_at_the_boundary_keep_the_lower_ids():
    logits = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0], [2.0, 2.0, 2.0, 2.0, 2.0]])
    assert kept(filter_logits(logits, top_k=2)) == [{1, 2}, {0, 1}]
    assert kept(filter_logits(logits, top_k=4)) == [{0, 1, 2, 3}, {0, 1, 2, 3}]


def test_top_k_1_equals_greedy():
    logits = torch.randn(8, 30)
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        assert torch.equal(choose_next(logits, top_k=1, generator=g), logits.argmax(-1))


@pytest.mark.parametrize(
    "p, expected",
    [
        (1e-9, {0}),  # always at least one token
        (0.3, {0}),
        (0.5, {0}),  # 0.5 ≥ 0.5: inclusive, the first token alone reaches p
        (0.5001, {0, 1}),
        (0.8, {0, 1}),  # 0.5 + 0.3 ≥ 0.8: inclusive
        (0.801, {0, 1, 2}),
        (0.95, {0, 1, 2}),
        (0.96, {0, 1, 2, 3}),
        (1.0, {0, 1, 2, 3}),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    order = [2, 0, 3, 1]  # token j has probability NUCLEUS[order[j]]
    for dtype in (torch.float32, torch.float64):
        z = filter_logits(log_probs(NUCLEUS, order).to(dtype), top_p=p)
        assert {order[j] for j in kept(z)[0]} == expected


def test_top_p_renormalises_over_the_nucleus_and_keeps_at_least_one():
    logits = torch.randn(16, 20) * 3
    z = filter_logits(logits, top_p=0.7)
    p, q = torch.softmax(logits, -1), torch.softmax(z, -1)
    keep = torch.isfinite(z)
    assert_close(q, torch.where(keep, p, 0) / (p * keep).sum(-1, keepdim=True))
    assert ((p * keep).sum(-1) >= 0.7 - 1e-6).all()
    # the smallest such set: without its least probable member, the kept mass is below p
    least = torch.where(keep, p, math.inf).min(-1).values
    assert ((p * keep).sum(-1) - least < 0.7).all()
    tiny = filter_logits(logits, top_p=1e-12)
    assert kept(tiny) == [{i} for i in logits.argmax(-1).tolist()]


def test_filters_apply_temperature_then_top_k_then_top_p():
    # τ = 2 flattens [0.5, 0.3, 0.15, 0.05] to ∝ its square root, [.38, .29, .21, .12]; p = 0.8 then
    # needs three tokens, where at τ = 1 it needs two.
    z = filter_logits(log_probs(NUCLEUS), temperature=2.0, top_p=0.8)
    assert kept(z) == [{0, 1, 2}]
    assert_close(z[0, :3], log_probs(NUCLEUS)[0, :3] / 2)
    # top-k first: the nucleus is taken in the renormalised top-2, [0.625, 0.375]
    assert kept(filter_logits(log_probs(NUCLEUS), top_k=2, top_p=0.6)) == [{0}]
    assert kept(filter_logits(log_probs(NUCLEUS), top_k=2, top_p=0.7)) == [{0, 1}]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"temperature": 0}, r"^temperature must be > 0 \(use greedy decoding for 0\), got 0$"),
        ({"temperature": -1.5}, r"^temperature must be > 0 .*, got -1.5$"),
        ({"temperature": math.nan}, r"^temperature must be > 0 .*, got nan$"),
        ({"temperature": math.inf}, r"^temperature must be finite, got inf$"),
        ({"top_k": 0}, r"^top_k must be an integer >= 1, got 0$"),
        ({"top_k": 2.5}, r"^top_k must be an integer >= 1, got 2.5$"),
        ({"top_p": 0}, r"^top_p must be in \(0, 1\], got 0$"),
        ({"top_p": 1.2}, r"^top_p must be in \(0, 1\], got 1.2$"),
    ],
)
def test_bad_options_are_one_line_user_errors(options, message):
    logits = torch.randn(2, 5)
    with pytest.raises(UserError, match=message):
        filter_logits(logits, **options)
    with pytest.raises(UserError, match=message):
        choose_next(logits, **options)
    with pytest.raises(UserError, match=message):  # before any step is taken
        sample_sequence(lambda x, s: pytest.fail("stepped"), None, [0], 3, **options)


def test_bad_logits_shape():
    with pytest.raises(ValueError, match=r"\(B, V\)"):
        filter_logits(torch.randn(5))


# ---- choose_next ------------------------------------------------------------------------------


def test_greedy_is_argmax_and_ignores_the_sampling_options():
    logits = torch.randn(7, 11)
    ids = choose_next(logits, greedy=True, temperature=0)
    assert ids.dtype == torch.int64 and ids.shape == (7,)
    assert torch.equal(ids, logits.argmax(-1))
    tie = torch.tensor([[0.0, 3.0, 3.0]])
    assert choose_next(tie, greedy=True).item() == 1  # the first maximum


def test_same_seed_same_samples():
    logits = torch.randn(4, 50)
    options = {"temperature": 1.3, "top_k": 20, "top_p": 0.9}
    draws = [
        [choose_next(logits, generator=g, **options) for _ in range(5)]
        for g in (torch.Generator().manual_seed(7), torch.Generator().manual_seed(7))
    ]
    for a, b in zip(*draws, strict=True):
        assert torch.equal(a, b)
        assert a.dtype == torch.int64 and a.shape == (4,)


@pytest.mark.parametrize("top_k", [None, 3])
def test_empirical_frequencies_match_the_softmax(top_k):
    """Pearson's χ² over 40 000 draws; 4 degrees of freedom, 0.1 % critical value 18.47."""
    logits = torch.tensor([1.0, 0.5, 0.0, -0.5, -2.0])
    p = torch.softmax(filter_logits(logits[None], top_k=top_k), -1)[0].double()
    n = 40_000
    ids = choose_next(logits.expand(n, 5), top_k=top_k, generator=torch.Generator().manual_seed(3))
    counts = torch.bincount(ids, minlength=5).double()
    assert counts[p == 0].sum() == 0  # dropped tokens are never drawn
    expected = n * p[p > 0]
    chi2 = ((counts[p > 0] - expected) ** 2 / expected).sum().item()
    assert chi2 < 18.47


# ---- sample_sequence: a toy model that counts -------------------------------------------------

V = 7


class Counting:
    """next = (previous token + number of tokens seen so far) mod V, with certainty.

    The state is the count; if it were not carried, the outputs would differ. Every call is
    recorded.
    """

    def __init__(self):
        self.fed = []

    def __call__(self, x, state):
        self.fed.append(x.tolist())
        count = state + 1
        nxt = (x + count) % V  # (B,)
        return 10.0 * nn.functional.one_hot(nxt, V).float(), count


def counting_reference(prime, length):
    seq, count = list(prime), len(prime)
    for _ in range(length):
        seq.append((seq[-1] + count) % V)
        count += 1
    return seq[len(prime) :]


@pytest.mark.parametrize("prime, length", [([3], 1), ([3], 6), ([1, 4, 2], 5), ([6, 0], 0)])
def test_prime_fed_once_per_token_and_state_carried(prime, length):
    model = Counting()
    out = sample_sequence(model, torch.zeros(1, dtype=torch.long), prime, length, greedy=True)
    assert out == counting_reference(prime, length)
    assert len(model.fed) == (len(prime) + length - 1 if length else 0)
    if length:
        assert model.fed == [[t] for t in prime + out[:-1]]  # prime once, then each sample


def test_sampling_a_near_certain_model_follows_it_and_accepts_a_tensor_prime():
    model = Counting()
    g = torch.Generator().manual_seed(0)
    out = sample_sequence(
        model, torch.zeros(1, dtype=torch.long), torch.tensor([1, 4]), 8, top_p=0.9, generator=g
    )
    assert out == counting_reference([1, 4], 8)


def test_bad_prime_or_length():
    model = Counting()
    with pytest.raises(UserError, match="prime must hold at least one token"):
        sample_sequence(model, None, [], 5)
    with pytest.raises(UserError, match="length must be an integer >= 0, got -1"):
        sample_sequence(model, None, [1], -1)
    assert model.fed == []


def test_sample_batch_matches_one_prompt_at_a_time():
    prompts = [[1, 2, 3], [0, 0, 5], [6, 6, 6]]
    model = Counting()
    out = sample_batch(model, torch.zeros(3, dtype=torch.long), prompts, 4, greedy=True)
    assert out.shape == (3, 4) and out.dtype == torch.int64
    assert out.tolist() == [counting_reference(p, 4) for p in prompts]
    assert len(model.fed) == 3 + 4 - 1
    with pytest.raises(UserError, match="equal length"):
        sample_batch(model, None, [[1, 2], [3]], 2)


# ---- a real model: embedding, stacked rnnkit.LSTM, linear head --------------------------------


class CharModel(nn.Module):
    def __init__(self, vocab_size=11, embed_size=6, hidden_size=9):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_size, dtype=torch.float64)
        self.rnn = rnnkit.LSTM(embed_size, hidden_size, num_layers=2, dtype=torch.float64)
        self.head = nn.Linear(hidden_size, vocab_size, dtype=torch.float64)

    def forward(self, ids, state=None):  # ids (T, B) -> logits (T, B, V)
        ys, state = self.rnn(self.embed(ids), state)
        return self.head(ys), state

    def step(self, x, state):  # the step_fn: x (B,) -> logits (B, V)
        logits, state = self(x[None], state)
        return logits[0], state


def test_sequence_log_prob_equals_one_batched_pass():
    model = CharModel().eval()
    ids = torch.randint(0, 11, (15,)).tolist()
    calls = []

    def step_fn(x, state):
        calls.append(x)
        return model.step(x, state)

    total, per_token = sequence_log_prob(step_fn, None, ids)
    with torch.no_grad():
        logits, _ = model(torch.tensor(ids)[:, None])  # (T, 1, V)
        picks = logits[:-1, 0].log_softmax(-1).gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]
    assert len(calls) == len(ids) - 1
    assert_close(torch.tensor(per_token, dtype=torch.float64), picks)
    assert total == pytest.approx(picks.sum().item(), rel=1e-12)
    assert total < 0

    # With first_logits: score all of ids after a prime, as the tail of prime + ids.
    prime = [4, 1, 7]
    with torch.no_grad():
        primed, state = model(torch.tensor(prime)[:, None])
    total2, per2 = sequence_log_prob(model.step, state, ids, first_logits=primed[-1])
    _, full = sequence_log_prob(model.step, None, prime + ids)
    assert len(per2) == len(ids)
    assert_close(torch.tensor(per2), torch.tensor(full[len(prime) - 1 :]))
    assert total2 == pytest.approx(sum(full[len(prime) - 1 :]), rel=1e-12)
    bits_per_token = -total2 / math.log(2) / len(per2)
    assert 0 < bits_per_token < 2 * math.log2(11)  # an untrained model: near log2 V


def test_sequence_log_prob_edges():
    model = CharModel().eval()
    assert sequence_log_prob(model.step, None, [3]) == (0.0, [])
    assert sequence_log_prob(model.step, None, [], first_logits=torch.zeros(11)) == (0.0, [])
    total, (only,) = sequence_log_prob(model.step, None, [2], first_logits=torch.zeros(1, 11))
    assert total == only == pytest.approx(-math.log(11))
    with pytest.raises(UserError, match="at least one token"):
        sequence_log_prob(model.step, None, [])
    with pytest.raises(UserError, match="token id 11 is out of range for a vocabulary of 11"):
        sequence_log_prob(model.step, None, [1, 11])


def test_greedy_sampling_with_carried_state_equals_rerunning_the_prefix():
    """The O(T) loop against the naive O(T²) one that re-reads the whole prefix every step."""
    model = CharModel().eval()
    prime = [5, 2, 9]
    out = sample_sequence(model.step, None, prime, 12, greedy=True)
    seq = list(prime)
    with torch.no_grad():
        for _ in range(12):
            logits, _ = model(torch.tensor(seq)[:, None])
            seq.append(logits[-1, 0].argmax().item())
    assert out == seq[len(prime) :]
    again = [
        sample_sequence(model.step, None, prime, 12, generator=torch.Generator().manual_seed(5))
        for _ in range(2)
    ]
    assert again[0] == again[1]


# ---- the one loop and its policies ------------------------------------------------------------


def test_generate_is_the_loop_of_sampling_and_decoding():
    """sample_batch and decode_batch are ``generate`` with a policy; <eos> ends a row, and the
    loop stops once every row has ended."""
    model = Counting()
    prime = torch.tensor([[1, 2], [0, 5]])
    out = generate(model, torch.zeros(2, dtype=torch.long), prime, 4, Greedy())
    assert out.tolist() == [counting_reference(p, 4) for p in prime.tolist()]
    assert len(model.fed) == 2 + 4 - 1
    model = Counting()
    eos = counting_reference([1, 2], 2)[-1]  # row 0 reaches this at its 2nd token
    out = generate(model, torch.zeros(2, dtype=torch.long), prime, 6, Greedy(), eos_id=eos)
    assert out[0].tolist()[1:] == [eos] * (out.shape[1] - 1)
    ids = decode_batch(model, torch.zeros(2, dtype=torch.long), 2, bos_id=1, eos_id=eos, max_len=6)
    assert ids[0] == counting_reference([1], 6)[: counting_reference([1], 6).index(eos)]


def test_policies():
    logits = torch.randn(4, 9)
    assert_close(Greedy()(logits), logits.argmax(-1))
    assert isinstance(policy(greedy=True, temperature=0), Greedy)  # options ignored, not checked
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert_close(
        Sample(0.7, top_k=4, generator=g1)(logits),
        choose_next(logits, temperature=0.7, top_k=4, generator=g2),
    )
    with pytest.raises(UserError, match="top_p must be in"):
        Sample(top_p=0.0)
