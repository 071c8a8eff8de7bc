"""Chrono initialisation (Tallec & Ollivier 2018): where the biases land, the characteristic
times they give, the same draw for rnnkit's and torch.nn's layers, and the refusals."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.errors import UserError
from rnnkit.layers.initialisation import chrono_init_
from rnnkit.layers.torch_compat import MinimalGRU


def draw(layer, t_max=100.0, seed=0):
    return chrono_init_(layer, t_max, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("peephole", [False, True])
def test_lstm_forget_times_spread_over_2_to_t_max(peephole):
    H, t_max = 64, 200.0
    layer = rnnkit.LSTM(3, H, num_layers=2, bidirectional=True, peephole=peephole)
    before = {k: v.clone() for k, v in layer.state_dict().items()}
    draw(layer, t_max)
    for name in ("l0", "l1", "l0_reverse", "l1_reverse"):
        b_ih, b_hh = getattr(layer, f"bias_ih_{name}"), getattr(layer, f"bias_hh_{name}")
        b_i, b_f = b_ih[:H], b_ih[H : 2 * H]
        times = 1 / (1 - torch.sigmoid(b_f.double()))  # steps to forget: 1 + u
        assert times.min() >= 2 - 1e-9 and times.max() <= t_max + 1e-6
        assert times.max() > 0.8 * t_max and times.min() < 0.2 * t_max  # spread, not one value
        torch.testing.assert_close(b_i, -b_f)
        assert (b_hh[: 2 * H] == 0).all()
        key = f"bias_ih_{name}"  # the cell and output gates keep torch's initialisation
        assert torch.equal(b_ih[2 * H :], before[key][2 * H :])
    for k, v in layer.state_dict().items():  # and so do all weights
        if k.startswith("weight"):
            assert torch.equal(v, before[k]), k


def test_rnnkit_and_torch_layers_get_the_same_biases_and_outputs():
    for ours, theirs in ((rnnkit.LSTM(4, 8), nn.LSTM(4, 8)), (rnnkit.GRU(4, 8), nn.GRU(4, 8))):
        theirs.load_state_dict(ours.state_dict())
        draw(ours, 50, seed=3)
        draw(theirs, 50, seed=3)
        x = torch.randn(7, 2, 4)
        torch.testing.assert_close(ours(x)[0], theirs(x)[0])
        for k, v in ours.state_dict().items():
            torch.testing.assert_close(v, theirs.state_dict()[k], msg=k)


def test_gru_and_minimal_gru_keep_gates():
    H, t_max = 32, 100.0
    gru = draw(rnnkit.GRU(2, H), t_max)  # torch's GRU keeps z * h_{t-1}: z near 1
    keep = torch.sigmoid(gru.bias_ih_l0[H : 2 * H].double())
    assert (keep >= 0.5).all() and (1 / (1 - keep)).max() <= t_max + 1e-6
    assert (gru.bias_hh_l0[H : 2 * H] == 0).all()
    mingru = draw(MinimalGRU(2, H), t_max)  # c_t = u c~ + (1 - u) c_{t-1}: u near 0
    write = torch.sigmoid(mingru.bias_ih_l0[:H].double())
    assert (write <= 0.5).all() and (1 / write).max() <= t_max + 1e-6
    assert (mingru.bias_hh_l0[:H] == 0).all()


def test_a_chrono_lstm_remembers_longer_at_the_start():
    """The point of it: at initialisation, how much of step 1's input is still in the state
    after 100 steps, measured by the gradient of the last state with respect to x_1."""
    torch.manual_seed(0)
    plain = rnnkit.LSTM(1, 32)
    chrono = draw(rnnkit.LSTM(1, 32), 200)
    chrono.weight_hh_l0.data.copy_(plain.weight_hh_l0.data)
    chrono.weight_ih_l0.data.copy_(plain.weight_ih_l0.data)

    def reach(layer):
        x = torch.randn(100, 1, 1, requires_grad=True)
        _, (h, c) = layer(x)
        (g,) = torch.autograd.grad(c.sum(), x)
        return g[0].abs().item()

    assert reach(chrono) > 1e3 * reach(plain)


@pytest.mark.parametrize(
    ("layer", "t_max", "message"),
    [
        (rnnkit.RNN(2, 4), 10, "needs a gated layer"),
        (rnnkit.LSTM(2, 4, bias=False), 10, "bias=False"),
        (rnnkit.LSTM(2, 4), 1, "T_max must be a number >= 2"),
        (rnnkit.LSTM(2, 4), math.nan, "T_max must be a number >= 2"),
    ],
)
def test_refusals(layer, t_max, message):
    with pytest.raises(UserError, match=message):
        chrono_init_(layer, t_max)
