"""beam_search: with a beam wider than the reachable prefixes it returns the exact most probable
label sequences (n-best, in order) and their exact log-probabilities, from brute force over
every path; with a toy language model the fused score is log P + alpha log P_lm + beta len."""

import math

import numpy as np
import pytest
import torch
from ctc_brute import label_log_probs, random_log_probs
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.ctc import beam_search, greedy_decode


class BigramLM:
    """A toy LM over the C labels: P(next | previous label), a fixed random table."""

    def __init__(self, C: int, seed: int) -> None:
        g = np.random.default_rng(seed)
        self.table = np.log(g.dirichlet(np.ones(C), size=C + 1))  # row C: the line start

    def start(self, n):
        return np.full(n, len(self.table) - 1), self.table[np.full(n, len(self.table) - 1)]

    def advance(self, state, rows, labels):
        s = np.where(labels >= 0, labels, state[rows])
        return s, self.table[s]

    def log_prob(self, labels) -> float:
        prev, total = len(self.table) - 1, 0.0
        for k in labels:
            total += self.table[prev, k]
            prev = k
        return total


EXACT = dict(prune_logp=None, beam_prune_logp=None)


def exact(lp, lm=None, alpha=0.0, beta=0.0, blank=0):
    table = label_log_probs(lp, blank)
    fused = {
        k: v + beta * len(k) + (alpha * lm.log_prob(k) if lm else 0.0) for k, v in table.items()
    }
    return sorted(fused.items(), key=lambda kv: -kv[1]), table


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("T, C, blank", [(5, 3, 0), (4, 4, 2), (6, 2, 1)])
def test_wide_beam_is_exact_n_best(seed, T, C, blank):
    B = 3
    lp = random_log_probs(T, B, C, seed, sharp=1.5)
    lengths = [T, T - 1, 2]
    exact_ = dict(prune_logp=None, beam_prune_logp=None)
    got = beam_search(lp, lengths, beam_width=128, blank=blank, n_best=5, **exact_)
    for b in range(B):
        want, _ = exact(lp[: lengths[b], b], blank=blank)
        # the batched search, and one item alone (the search over Python floats)
        alone = beam_search(lp[: lengths[b], b : b + 1], None, 128, blank, n_best=5, **exact_)
        for hyps in (got[b], alone[0]):
            assert len(hyps) == min(5, len(want))
            for (labels, score), (w_labels, w_score) in zip(hyps, want, strict=False):
                assert tuple(labels) == w_labels
                assert score == pytest.approx(w_score, abs=1e-9)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("alpha, beta", [(0.7, 0.0), (1.3, 0.8), (0.0, -0.5)])
def test_fused_scores_equal_the_formula(seed, alpha, beta):
    T, B, C = 5, 2, 3
    lp = random_log_probs(T, B, C, 100 + seed)
    lm = BigramLM(C, seed)
    got = beam_search(
        lp, None, 64, lm=lm, alpha=alpha, beta=beta, n_best=3, prune_logp=None, beam_prune_logp=None
    )
    for b in range(B):
        want, table = exact(lp[:, b], lm, alpha, beta)
        alone = beam_search(
            lp[:, b : b + 1], None, 64, lm=lm, alpha=alpha, beta=beta, n_best=3, **EXACT
        )
        for hyps in (got[b], alone[0]):
            for labels, score in hyps:
                formula = table[tuple(labels)] + alpha * lm.log_prob(labels) + beta * len(labels)
                assert score == pytest.approx(formula, abs=1e-9)
            assert [tuple(h[0]) for h in hyps] == [k for k, _ in want[:3]]


def test_n_best_is_ordered_and_distinct():
    lp = random_log_probs(12, 4, 5, 3, sharp=2.0)
    for hyps in beam_search(lp, beam_width=10, n_best=10, beam_prune_logp=None):
        scores = [s for _, s in hyps]
        assert scores == sorted(scores, reverse=True)
        assert len({tuple(h) for h, _ in hyps}) == len(hyps) == 10


def test_width_one_on_a_peaked_input_is_greedy_and_lengths_zero_is_empty():
    lp = random_log_probs(30, 3, 6, 5, sharp=6.0).float()
    lengths = torch.tensor([30, 17, 0])
    beams = beam_search(lp, lengths, beam_width=1)
    greedy = greedy_decode(lp, lengths)
    assert [h[0][0] for h in beams] == greedy
    assert beams[2] == [([], 0.0)]


def test_pruning_changes_little_on_peaked_input():
    lp = random_log_probs(40, 2, 8, 9, sharp=5.0)
    full = beam_search(lp, beam_width=8, prune_logp=None, beam_prune_logp=None)
    pruned = beam_search(lp, beam_width=8, top_k=3, beam_prune_logp=-5.0)
    for f, p in zip(full, pruned, strict=True):
        assert f[0][0] == p[0][0]
        assert math.isclose(f[0][1], p[0][1], abs_tol=1e-3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(beam_width=0), "beam_width must be an integer >= 1"),
        (dict(n_best=3, beam_width=2), r"n_best must be <= beam_width \(2\)"),
        (dict(alpha=0.5), "alpha weighs a language model"),
        (dict(lm=object()), "lm must have start"),
        (dict(prune_logp=1.0), "prune_logp must be None or a log-probability"),
        (dict(beam_prune_logp=0.5), "beam_prune_logp must be None or a log-probability"),
        (dict(top_k=0), "top_k must be None or an integer"),
        (dict(lengths=[5]), r"lengths\[0\] = 5 is outside \[0, 4\]"),
        (dict(blank=9), "blank must be an integer"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        beam_search(random_log_probs(4, 1, 3, 0), **kwargs)
    assert "\n" not in str(e.value)


def test_beam_prune_logp_drops_candidates_far_below_the_best():
    lp = random_log_probs(10, 2, 4, 21, sharp=2.0)
    wide = beam_search(lp, beam_width=8, n_best=8, beam_prune_logp=None)
    assert all(len(h) == 8 for h in wide)
    only_best = beam_search(lp, beam_width=8, n_best=8, beam_prune_logp=0.0)
    assert all(len(h) == 1 for h in only_best)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("options", [{}, dict(top_k=2), dict(beam_prune_logp=None)])
@pytest.mark.parametrize("with_lm", [False, True])
def test_one_item_alone_equals_the_batched_search(seed, options, with_lm):
    """B = 1 runs the search over Python floats; it keeps the same beams as the arrays."""
    lp = random_log_probs(40, 3, 7, 50 + seed, sharp=4.0)
    lengths = [40, 31, 12]
    fusion = dict(lm=BigramLM(7, seed), alpha=0.6, beta=0.4) if with_lm else {}
    batched = beam_search(lp, lengths, beam_width=6, n_best=6, **options, **fusion)
    for b in range(3):
        alone = beam_search(
            lp[: lengths[b], b : b + 1], beam_width=6, n_best=6, **options, **fusion
        )
        assert [h[0] for h in alone[0]] == [h[0] for h in batched[b]]
        assert [h[1] for h in alone[0]] == pytest.approx([h[1] for h in batched[b]], abs=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    T=st.integers(1, 5),
    C=st.integers(2, 4),
    blank=st.integers(0, 3),
    seed=st.integers(0, 10_000),
    sharp=st.floats(0.1, 4.0),
    alone=st.booleans(),
)
def test_property_wide_beam_best_equals_brute_force(T, C, blank, seed, sharp, alone):
    blank = blank % C
    lp = random_log_probs(T, 1 if alone else 2, C, seed, sharp)
    got = beam_search(lp, beam_width=(C**T) * 2, blank=blank, **EXACT)
    want, _ = exact(lp[:, 0], blank=blank)
    assert tuple(got[0][0][0]) == want[0][0]
    assert got[0][0][1] == pytest.approx(want[0][1], abs=1e-9)
