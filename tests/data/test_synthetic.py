"""The synthetic generators: structure, determinism, and their baselines checked empirically."""

from __future__ import annotations

import math

import pytest
import torch

from rnnkit.data import synthetic as s


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---- adding --------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [2, 3, 50, 101])
def test_adding_structure(T):
    x, y = s.adding(64, T, gen())
    assert x.shape == (T, 64, 2) and y.shape == (64,)
    assert x.dtype == y.dtype == torch.float32
    u, mask = x[..., 0], x[..., 1]
    assert ((u >= 0) & (u <= 1)).all()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    half = T // 2
    assert (mask[:half].sum(0) == 1).all() and (mask[half:].sum(0) == 1).all()  # one per half
    torch.testing.assert_close(y, (u * mask).sum(0))


def test_adding_is_a_function_of_the_seed():
    a, b, c = s.adding(8, 20, gen(1)), s.adding(8, 20, gen(1)), s.adding(8, 20, gen(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_adding_baseline_is_one_sixth_and_matches_data():
    assert s.adding_baseline_mse() == pytest.approx(1 / 6, rel=1e-15, abs=0)
    _, y = s.adding(100_000, 4, gen(3))
    # predicting 1 (= E[y]) gives Var(y); std error of the estimate ~ 0.0003
    assert ((y - 1) ** 2).mean().item() == pytest.approx(1 / 6, abs=0.002)
    assert y.mean().item() == pytest.approx(1.0, abs=0.005)


def test_adding_rejects_short_sequences():
    with pytest.raises(ValueError, match="T must be an integer >= 2"):
        s.adding(4, 1, gen())
    with pytest.raises(ValueError, match="batch"):
        s.adding(0, 10, gen())


# ---- copy ----------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [1, 5, 50])
def test_copy_layout(T):
    x, y = s.copy_task(32, T, gen())
    assert x.shape == y.shape == (T + 20, 32) and x.dtype == torch.long
    symbols = x[:10]
    assert ((symbols >= 1) & (symbols <= 8)).all()
    assert (x[10 : T + 9] == s.COPY_BLANK).all()
    assert (x[T + 9] == s.COPY_DELIMITER).all()
    assert (x[T + 10 :] == s.COPY_BLANK).all()
    assert (y[: T + 10] == s.COPY_BLANK).all()
    assert torch.equal(y[T + 10 :], symbols)
    assert len(s.COPY_NAMES) == s.COPY_VOCAB == int(x.max()) + 1


def test_copy_baseline_formula_and_data():
    for T in (1, 50, 100, 200):
        assert s.copy_baseline_ce(T) == pytest.approx(10 * math.log(8) / (T + 20), rel=1e-15)
    T = 5
    x, y = s.copy_task(10_000, T, gen(4))
    # The memoryless strategy: certain blank for T + 10 steps, uniform over 1..8 at the recall.
    logp = torch.full((T + 20, s.COPY_VOCAB), -math.inf)
    logp[: T + 10, s.COPY_BLANK] = 0.0
    logp[T + 10 :, 1:9] = -math.log(8)
    ce = -logp.gather(1, y).mean().item()  # (T+20, B) targets' log-probabilities
    assert ce == pytest.approx(s.copy_baseline_ce(T), rel=1e-6)
    # ... and it is the best memoryless strategy: the recalled symbols are uniform (entropy log 8)
    freq = torch.bincount(y[T + 10 :].flatten(), minlength=10)[1:9].double()
    freq /= freq.sum()
    assert (freq - 1 / 8).abs().max() < 0.006
    entropy = -(freq * freq.log()).sum().item()
    assert entropy == pytest.approx(math.log(8), abs=1e-3)


# ---- the toy tasks -------------------------------------------------------------------------
def test_running_average_recursion_and_baseline():
    a, T = 0.7, 25
    x, y = s.running_average(20_000, T, gen(5), a=a)
    assert x.shape == y.shape == (T, 20_000, 1)
    torch.testing.assert_close(y[0], x[0])
    torch.testing.assert_close(y[1:], x[1:] + a * y[:-1])
    base = s.running_average_baseline_mse(T, a)
    closed = sum((1 - a ** (2 * t)) / (1 - a * a) for t in range(1, T + 1)) / (3 * T)
    assert base == pytest.approx(closed, rel=1e-12)
    assert (y**2).mean().item() == pytest.approx(base, rel=0.03)


def test_running_sum_is_the_cumulative_sum():
    x, y = s.running_sum(8, 30, gen(6))
    torch.testing.assert_close(y, x.cumsum(0))
    assert s.running_sum_baseline_mse(30) == pytest.approx(31 / 6)
    assert s.running_average_baseline_mse(30, 1.0) == pytest.approx(31 / 6, rel=1e-12)
    _, y = s.running_sum(20_000, 12, gen(7))
    assert (y**2).mean().item() == pytest.approx(s.running_sum_baseline_mse(12), rel=0.03)


def test_larger_total_labels():
    x, y = s.larger_total(20_000, 15, gen(8))
    assert x.shape == (15, 20_000, 2) and y.shape == (15, 20_000) and y.dtype == torch.long
    totals = x.cumsum(0)
    assert torch.equal(y, (totals[..., 1] > totals[..., 0]).long())
    assert y.float().mean().item() == pytest.approx(s.larger_total_baseline_accuracy(), abs=0.01)
