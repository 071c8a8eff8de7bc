"""rnnkit lab logistic: the derivative of the n-th iterate against the chain rule's product and
against autograd, Lyapunov exponents with known values, the attractor's period, the command."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.lab.logistic import (
    attractor_period,
    iterate_derivative,
    iterates,
    log_abs_derivative,
    lyapunov_exponent,
)


def test_iterates_follow_the_map():
    xs = iterates(0.3, 3.5, 3)
    assert xs[1] == pytest.approx(3.5 * 0.3 * 0.7)
    assert xs[3] == pytest.approx(3.5 * xs[2] * (1 - xs[2]))


@pytest.mark.parametrize("r", [2.8, 3.5, 3.9])
@pytest.mark.parametrize("x0", [0.1, 0.37, 0.82])
def test_derivative_of_the_nth_iterate_equals_autograd_and_the_product(r, x0):
    n = 25
    x = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    expected, h = [], x
    for _ in range(n):
        h = r * h * (1 - h)
        (g,) = torch.autograd.grad(h, x, retain_graph=True)
        expected.append(float(g))
    ours = iterate_derivative(x0, r, n)
    assert ours[0] == 1.0
    np.testing.assert_allclose(ours[1:], expected, rtol=1e-9)
    # The same as the product of f'(x_k) written out, and the log version agrees.
    xs = iterates(x0, r, n)
    product = np.prod([r * (1 - 2 * xk) for xk in xs[:n]])
    assert ours[n] == pytest.approx(product, rel=1e-12)
    np.testing.assert_allclose(log_abs_derivative(x0, r, n), np.log(np.abs(ours)), atol=1e-9)


def test_lyapunov_exponent_has_the_known_values():
    # A stable fixed point x* = 1 - 1/r: f'(x*) = 2 - r, so λ = ln|2 - r|.
    assert float(lyapunov_exponent(2.8)) == pytest.approx(math.log(0.8), abs=1e-9)
    # r = 4 is conjugate to the tent map: λ = ln 2 (a numerical orbit, so a tolerance).
    assert float(lyapunov_exponent(4.0, n=20000)) == pytest.approx(math.log(2), abs=0.02)
    # Superstable 2-cycle at r = 1 + √5 contains x = 1/2: the derivative is exactly 0.
    assert float(lyapunov_exponent(1 + math.sqrt(5))) < -10


def test_periods_double_and_the_gradient_vanishes_on_the_attractor():
    assert [attractor_period(r) for r in (2.8, 3.2, 3.5, 3.56)] == [1, 2, 4, 8]
    assert attractor_period(3.9) == 0  # chaos
    # Vanishing at r = 3.5 (λ < 0), exploding at 3.9 (λ > 0), at the rate e^{λ n}.
    for r in (3.5, 3.9):
        lam = float(lyapunov_exponent(r))
        logs = log_abs_derivative(0.3, r, 400)
        assert (logs[400] - logs[200]) / 200 == pytest.approx(lam, abs=0.05)
    assert lyapunov_exponent(3.5) < 0 < lyapunov_exponent(3.9)


def test_command_writes_its_files(tmp_path, capsys):
    out = tmp_path / "lab"
    argv = ["lab", "logistic", "--out", str(out), "--n", "30", "--points", "60", "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "attractor period 4" in text
    result = json.loads((out / "results.json").read_text())
    assert result["period"] == 4 and result["lyapunov"] < 0
    assert len(result["cycle"]) == 4
    # The cycle is a cycle: f applied to its points permutes them.
    cycle = np.array(result["cycle"])
    np.testing.assert_allclose(np.sort(3.5 * cycle * (1 - cycle)), cycle, atol=1e-6)
    assert (out / "logistic.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args, word",
    [
        (["--r", "4.5"], "--r"),
        (["--x0", "0.2,abc"], "--x0"),
        (["--n", "0"], "--n"),
        (["--r-min", "3.9", "--r-max", "3.0"], "--r-min"),
        (["--bogus"], "unrecognized"),
    ],
)
def test_bad_options_are_one_line_errors(tmp_path, args, word):
    with pytest.raises(UserError, match=word) as info:
        from rnnkit.lab.logistic import main as lab_main

        lab_main([*args, "--out", str(tmp_path / "x")])
    assert "\n" not in str(info.value)
