"""rnnkit.metrics: perplexity and bits per token from a loss in nats."""

import math

import pytest

from rnnkit.metrics import bits_per_token, perplexity


def test_perplexity_is_e_to_the_mean_loss():
    assert perplexity(math.log(4.0)) == pytest.approx(4.0)
    assert perplexity(10 * math.log(65.0), tokens=10) == pytest.approx(65.0)
    assert perplexity(0.0) == 1.0


def test_a_diverged_loss_gives_a_finite_perplexity():
    assert perplexity(1e6) == pytest.approx(math.exp(50.0))
    assert perplexity(float("inf")) == pytest.approx(math.exp(50.0))


def test_bits_per_token_is_the_loss_over_ln_2():
    assert bits_per_token(math.log(2.0)) == pytest.approx(1.0)
    assert bits_per_token(6 * math.log(8.0), tokens=2) == pytest.approx(9.0)
    assert bits_per_token(0.0, tokens=0) == 0.0
