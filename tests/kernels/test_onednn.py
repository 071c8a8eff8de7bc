"""The kernels' recurrent products through oneDNN with a packed weight
(``rnnkit.kernels.onednn``): the same values as torch.addmm in float32, taken only where they
apply, and the kernels' outputs and gradients the same with the switch on and off."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import rnnkit
from rnnkit.kernels import onednn
from rnnkit.kernels.backends import set_backend
from rnnkit.kernels.onednn import MIN_MACS, StepProduct, applies

needs_onednn = pytest.mark.skipif(not onednn._available(), reason="torch without oneDNN")


@needs_onednn
@pytest.mark.parametrize("with_bias", [False, True])
@pytest.mark.parametrize("with_add", [False, True])
def test_a_packed_product_equals_addmm(with_bias, with_add):
    torch.manual_seed(0)
    rows, N, K = 64, 768, 512
    W, x = torch.randn(N, K), torch.randn(rows, K)
    b = torch.randn(N) if with_bias else None
    add = torch.randn(rows, N) if with_add else None
    product = StepProduct(W, rows, b)
    assert product.packed is not None
    out = torch.empty(rows, N)
    got = product.into(x, out, add=add)
    want = x @ W.t() + (0 if b is None else b) + (0 if add is None else add)
    assert got is out
    assert_close(out, want, rtol=1e-5, atol=1e-4)


def test_the_plain_product_where_onednn_does_not_apply():
    """float64, a product below MIN_MACS, and the switch off keep torch.addmm, exactly."""
    torch.manual_seed(0)
    W64, x64 = torch.randn(768, 512, dtype=torch.float64), torch.randn(32, 512, dtype=torch.float64)
    assert not applies(W64, 32)
    small = torch.randn(8, 8)
    assert 4 * small.numel() < MIN_MACS and not applies(small, 4)
    W = torch.randn(768, 512)
    assert applies(W, 64) and not applies(W, 64, min_macs=2**26)  # a kernel's own threshold
    with set_backend("onednn", "off"):
        assert not applies(W, 32)
        product = StepProduct(W, 32)
    assert product.packed is None
    x, add = torch.randn(32, 512), torch.randn(32, 768)
    out = torch.empty(32, 768)
    assert torch.equal(product.into(x, out, add=add), torch.addmm(add, x, W.t()))
    out64 = torch.empty(32, 768, dtype=torch.float64)
    assert torch.equal(StepProduct(W64, 32).into(x64, out64), x64 @ W64.t())


LAYERS = {
    "GRU": {},
    "GRU-reset-before": {"reset_after": False},
    "RNN": {},
    "MinimalGRU": {},
    "LSTM": {"peephole": True},  # the hand-derived LSTM kernel: peepholes or layer norm
    "LSTM-ln": {"layer_norm": True},
}


@needs_onednn
@pytest.mark.parametrize("layer", list(LAYERS))
@pytest.mark.parametrize("lengths", [False, True])
def test_kernels_give_the_same_outputs_and_gradients_with_onednn(layer, lengths, monkeypatch):
    """At a size where the packed products apply (batch 64, hidden 512; 1024 for the
    reset-before GRU), a training step of
    each kernel gives the outputs and gradients it gives with the switch off, within 1e-5 of
    each tensor's largest entry (float32: only the order of the additions differs)."""
    packed = []
    into = StepProduct.into

    def counting(self, *args, **kwargs):
        packed.append(self.packed is not None)
        return into(self, *args, **kwargs)

    monkeypatch.setattr(StepProduct, "into", counting)
    torch.manual_seed(0)
    H = 1024 if layer == "GRU-reset-before" else 512  # its products pack from 2^26 (PACK_MIN_MACS)
    net = getattr(rnnkit, layer.split("-")[0])(16, H, **LAYERS[layer])
    x = torch.randn(4, 64, 16, requires_grad=True)
    lens = torch.randint(1, 5, (64,)) if lengths else None
    results = []
    for mode in ("off", "auto"):
        packed.clear()
        with set_backend("onednn", mode):
            y, h = net(x, lengths=lens)
            h = sum(s.sum() for s in h) if isinstance(h, tuple) else h.sum()
            grads = torch.autograd.grad((y * y).sum() + h, (x, *net.parameters()))
        results.append((y, h, *grads))
        assert any(packed) == (mode == "auto")
    for a, b in zip(*results, strict=True):  # relative to each tensor's largest entry: the
        # layer norm's 1/σ magnifies rounding in single entries, in either order of additions
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()


@needs_onednn
def test_a_weight_onednn_refuses_falls_back_to_addmm(monkeypatch):
    """If oneDNN cannot pack the weight, the product is torch.addmm's, not an error."""

    def refuse(*args):
        raise RuntimeError("not this layout")

    monkeypatch.setattr(onednn, "_reorder", refuse)
    torch.manual_seed(0)
    W, x = torch.randn(768, 512), torch.randn(32, 512)
    product = StepProduct(W, 32)
    assert product.packed is None
    assert torch.equal(product.into(x, torch.empty(32, 768)), x @ W.t())
