"""Inference over a padded batch in one packed call (rnnkit.layers.packed) against the kernels'
path, layer by layer, and where it applies."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import rnnkit
from rnnkit.kernels.backends import set_backend
from rnnkit.layers import packed, stacked

LENGTHS = torch.tensor([3, 6, 1, 4])


def outputs(model, x, hx, lengths, backend):
    with torch.no_grad(), set_backend("packed", backend):
        y, hn = model(x, hx, lengths=lengths)
    return y, hn if isinstance(hn, tuple) else (hn,)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("layers", [1, 2])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("given_state", [False, True])
def test_packed_call_equals_the_kernels(
    kind, bidirectional, layers, bias, given_state, monkeypatch
):
    """Outputs (0 at padding) and final states equal the layer-by-layer path's in float64, with
    lengths shorter than the padded length for every sequence too, and given initial states."""
    calls = []
    real = packed.packed_stack
    monkeypatch.setattr(stacked, "packed_stack", lambda *a: calls.append(1) or real(*a))
    torch.manual_seed(0)
    cls = rnnkit.GRU if kind == "gru" else rnnkit.LSTM
    model = cls(3, 5, num_layers=layers, bidirectional=bidirectional, bias=bias).double().eval()
    x = torch.randn(7, 4, 3, dtype=torch.float64)  # T 7 > every length
    hx = None
    if given_state:
        shape = (layers * (2 if bidirectional else 1), 4, 5)
        h = torch.randn(shape, dtype=torch.float64)
        hx = (h, torch.randn(shape, dtype=torch.float64)) if kind == "lstm" else h
    y, hn = outputs(model, x, hx, LENGTHS, "auto")
    assert calls, "the packed call did not run"
    calls.clear()
    y_ref, hn_ref = outputs(model, x, hx, LENGTHS, "off")
    assert not calls
    assert y.shape == y_ref.shape == (7, 4, 5 * (2 if bidirectional else 1))
    assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    assert (y[LENGTHS[2] :, 2] == 0).all()
    for a, b in zip(hn, hn_ref, strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_applies_only_to_inference_over_plain_cells():
    torch.manual_seed(0)
    x = torch.randn(6, 4, 3)

    def takes(model, lengths=LENGTHS, grad=False) -> bool:
        model._stack.train(model.training)  # as the layer's forward does
        with torch.set_grad_enabled(grad):
            return packed.applies(model._stack, x, lengths)

    gru = rnnkit.GRU(3, 5, num_layers=2, bidirectional=True)
    assert takes(gru)
    assert not takes(gru, grad=True)  # training: the hand-derived kernels
    assert not takes(gru, lengths=None)
    assert not takes(gru, lengths=torch.tensor([3, 0, 1, 4]))  # packing refuses an empty one
    with set_backend("packed", "off"):
        assert not takes(gru)
    assert not takes(rnnkit.GRU(3, 5, reset_after=False))
    assert not takes(rnnkit.LSTM(3, 5, peephole=True))
    assert not takes(rnnkit.RNN(3, 5))
    assert not takes(rnnkit.GRU(3, 3, num_layers=2, residual=True))
    dropping = rnnkit.GRU(3, 5, num_layers=2, dropout=0.5)
    assert not takes(dropping) and takes(dropping.eval())
    hooked = rnnkit.LSTM(3, 5)
    hooked._stack.layers[0].register_forward_hook(lambda *a: None)
    assert not takes(hooked)


@pytest.mark.parametrize("kind", ["gru", "lstm"])
def test_a_packed_sequence_in_inference_equals_torch_nn(kind):
    """A PackedSequence input with gradients off (the packed call's path) gives torch.nn's
    packed output and final states on the same weights."""
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence

    torch.manual_seed(0)
    theirs = (nn.GRU if kind == "gru" else nn.LSTM)(3, 5, 2, bidirectional=True).double()
    ours = (rnnkit.GRU if kind == "gru" else rnnkit.LSTM)(3, 5, 2, bidirectional=True).double()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64)
    packed_in = pack_padded_sequence(x, torch.tensor([3, 6, 1, 4]), enforce_sorted=False)
    with torch.no_grad():
        y, h = ours(packed_in)
        y_ref, h_ref = theirs(packed_in)
    assert_close(y.data, y_ref.data)
    for a, b in zip(*(s if isinstance(s, tuple) else (s,) for s in (h, h_ref)), strict=True):
        assert_close(a, b)
