"""Truncated BPTT: windows of k steps with the state carried and detached."""

import pytest
import torch
from torch.testing import assert_close

import rnnkit
from rnnkit.train.bptt import windows

D = torch.float64


def sum_squares(ys, targets):
    return ((ys - targets) ** 2).sum()


def grads_after(layer, fn):
    layer.zero_grad(set_to_none=True)
    out = fn()
    return out, [p.grad.clone() for p in layer.parameters()]


@pytest.mark.parametrize("k", [12, 20])
@pytest.mark.parametrize("make", [lambda: rnnkit.LSTMCell(3, 4), lambda: rnnkit.GRUCell(3, 4)])
def test_window_at_least_T_equals_full_bptt(make, k):
    layer = rnnkit.Recurrent(make().to(D))
    xs, targets = torch.randn(12, 2, 3, dtype=D), torch.randn(12, 2, 4, dtype=D)

    def full():
        ys, _ = layer(xs)
        loss = sum_squares(ys, targets)
        loss.backward()
        return loss.item()

    loss_full, g_full = grads_after(layer, full)
    (loss_tb, _), g_tb = grads_after(
        layer, lambda: rnnkit.truncated_bptt(layer, xs, targets, sum_squares, bptt_len=k)
    )
    assert loss_tb == pytest.approx(loss_full, rel=1e-12)
    for a, b in zip(g_full, g_tb, strict=True):
        assert_close(a, b)


def test_short_windows_carry_state_but_cut_gradients():
    layer = rnnkit.Recurrent(rnnkit.ElmanCell(3, 4).to(D))
    xs, targets = torch.randn(12, 2, 3, dtype=D), torch.randn(12, 2, 4, dtype=D)
    full_loss = sum_squares(layer(xs)[0], targets).item()
    (loss, state), g_short = grads_after(
        layer, lambda: rnnkit.truncated_bptt(layer, xs, targets, sum_squares, bptt_len=5)
    )
    assert loss == pytest.approx(full_loss, rel=1e-12)  # the forward pass is the same
    assert not state.requires_grad  # and the state comes back detached
    layer.zero_grad()
    sum_squares(layer(xs)[0], targets).backward()
    g_full = [p.grad for p in layer.parameters()]
    assert any((a - b).abs().max() > 1e-6 for a, b in zip(g_full, g_short, strict=True))


def test_detach_state_recurses():
    h = torch.ones(2, requires_grad=True) * 2
    out = rnnkit.detach_state((h, (h, [h])))
    assert not out[0].requires_grad and not out[1][1][0].requires_grad
    assert rnnkit.detach_state(None) is None


def test_windows():
    assert [(w.start, w.stop) for w in windows(7, 3)] == [(0, 3), (3, 6), (6, 7)]
    with pytest.raises(ValueError, match="bptt_len must be a positive integer"):
        list(windows(7, 0))
