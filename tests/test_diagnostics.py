"""Gradient flow: the lectures' figures for the scalar linear RNN, and Jacobians of real cells."""

import pytest
import torch
from torch.testing import assert_close

import rnnkit
from rnnkit.diagnostics import step_jacobians

D = torch.float64


def scalar_linear_rnn(w):
    """h_t = w h_{t-1} + x_t: one unit, identity activation, no bias."""
    cell = rnnkit.ElmanCell(1, 1, bias=False, nonlinearity="identity").to(D)
    with torch.no_grad():
        cell.weight_hh.fill_(w)
        cell.weight_ih.fill_(1.0)
    return cell


@pytest.mark.parametrize("w, expected", [(1.1, 117.4), (0.9, 0.00515)])
def test_lectures_figures_over_50_steps(w, expected):
    cell = scalar_linear_rnn(w)
    xs = torch.randn(50, 1, 1, dtype=D)
    J = rnnkit.jacobian_product(cell, xs)
    assert J.shape == (1, 1, 1)
    assert J.item() == pytest.approx(expected, rel=1e-3)
    assert J.item() == pytest.approx(w**50, rel=1e-12)


@pytest.mark.parametrize("w", [1.1, 0.9])
def test_gradient_norms_decay_geometrically(w):
    cell = scalar_linear_rnn(w)
    xs = torch.randn(50, 1, 1, dtype=D)
    norms = rnnkit.gradient_norms(cell, xs, lambda ys: ys[-1].sum())  # L = h_T
    assert norms.shape == (50,)
    expected = torch.tensor([w ** (50 - t) for t in range(1, 51)], dtype=D)
    assert_close(norms, expected)


@pytest.mark.parametrize(
    "make",
    [lambda: rnnkit.LSTMCell(2, 3), lambda: rnnkit.GRUCell(2, 3), lambda: rnnkit.ElmanCell(2, 3)],
)
def test_jacobian_product_equals_autograd_jacobian_of_the_whole_run(make):
    cell = make().to(D)
    xs = torch.randn(6, 1, 2, dtype=D)
    state = cell.init_state(1)
    flat0 = torch.cat(state, -1) if isinstance(state, tuple) else state
    sizes = [s.shape[-1] for s in state] if isinstance(state, tuple) else None

    def run(flat):
        s = tuple(flat.split(sizes, -1)) if sizes else flat
        _, s = rnnkit.Recurrent(cell, use_kernel=False)(xs, s)
        return torch.cat(s, -1) if sizes else s

    full = torch.autograd.functional.jacobian(run, flat0)[0, :, 0, :]
    assert_close(rnnkit.jacobian_product(cell, xs, state)[0], full)
    assert len(step_jacobians(cell, xs)) == 6


def test_gradient_norms_for_lstm_see_every_step():
    cell = rnnkit.LSTMCell(2, 3).to(D)
    norms = rnnkit.gradient_norms(cell, torch.randn(20, 4, 2, dtype=D), lambda ys: ys.pow(2).sum())
    assert norms.shape == (20,) and torch.all(norms > 0)
    with pytest.raises(ValueError, match=r"xs must be \(T, B, I\)"):
        rnnkit.gradient_norms(cell, torch.randn(20, 2), lambda ys: ys.sum())
