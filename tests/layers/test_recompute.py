"""Checkpointing through time (``checkpoint_steps``): the same values and gradients as storing
everything, for every cell, with lengths, residual connections and dropout; fewer saved bytes;
and ``rnnkit bench memory`` measuring it in fresh processes."""

from __future__ import annotations

import json

import pytest
import torch
from torch.testing import assert_close

import rnnkit.kernels.lstm as lstm_kernels
from rnnkit.bench.memory import main_memory
from rnnkit.errors import UserError
from rnnkit.layers import torch_compat as tc
from rnnkit.layers.stacked import Stacked

D = torch.float64
LAYERS = [
    ("LSTM", {}),
    ("LSTM", {"peephole": True}),
    ("LSTM", {"layer_norm": True}),
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("RNN", {}),
    ("MinimalGRU", {}),
    ("JordanRNN", {}),
]


def outputs_and_grads(layer, x, lengths, hx=None):
    y, h = layer(x, hx, lengths=lengths)
    hs = h if isinstance(h, tuple) else (h,)
    loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).pow(2).sum()
    loss = loss + sum((t * 0.3).sum() for t in hs)
    inputs = [x, *([] if hx is None else list(hx if isinstance(hx, tuple) else (hx,)))]
    return [y, *hs, *torch.autograd.grad(loss, [*inputs, *layer.parameters()])]


@pytest.mark.parametrize("name, opts", LAYERS)
@pytest.mark.parametrize("k", [1, 6, 40])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_same_values_and_gradients(name, opts, k, with_lengths):
    torch.manual_seed(0)
    plain = getattr(tc, name)(3, 5, 2, dtype=D, **opts)
    recomputed = getattr(tc, name)(3, 5, 2, dtype=D, checkpoint_steps=k, **opts)
    recomputed.load_state_dict(plain.state_dict())
    x = torch.randn(17, 4, 3, dtype=D, requires_grad=True)
    lengths = torch.tensor([17, 6, 0, 11]) if with_lengths else None
    hx = tuple(torch.randn(2, 4, s, dtype=D, requires_grad=True) for s in plain.state_sizes)
    hx = hx if len(hx) > 1 else hx[0]
    for a, b in zip(
        outputs_and_grads(plain, x, lengths, hx),
        outputs_and_grads(recomputed, x, lengths, hx),
        strict=True,
    ):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "rnnkit"])
def test_float32_lstm_on_both_backends(backend):
    lstm_kernels.set_lstm_backend(backend)
    try:
        torch.manual_seed(0)
        plain = tc.LSTM(4, 8, 2, residual=True)
        recomputed = tc.LSTM(4, 8, 2, residual=True, checkpoint_steps=5)
        recomputed.load_state_dict(plain.state_dict())
        x = torch.randn(23, 3, 4, requires_grad=True)
        for a, b in zip(
            outputs_and_grads(plain, x, None), outputs_and_grads(recomputed, x, None), strict=True
        ):
            assert_close(a, b, rtol=1e-5, atol=1e-6)
    finally:
        lstm_kernels.set_lstm_backend("auto")


def test_dropout_masks_are_those_of_storing_everything():
    """In training with dropout, the layers and dropout run in the same order as with k = 0, so
    with the same seed the masks, the values and the gradients are those of storing everything
    (kernel cells recompute inside the kernel, drawing no random numbers)."""
    torch.manual_seed(0)
    plain = tc.GRU(3, 6, 3, dropout=0.5, dtype=D).train()
    layer = tc.GRU(3, 6, 3, dropout=0.5, dtype=D, checkpoint_steps=4).train()
    layer.load_state_dict(plain.state_dict())
    x = torch.randn(10, 2, 3, dtype=D, requires_grad=True)
    torch.manual_seed(7)
    got = outputs_and_grads(layer, x, None)
    torch.manual_seed(7)
    want = outputs_and_grads(plain, x, None)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gradcheck_through_recomputation():
    torch.manual_seed(0)
    layer = tc.LSTM(2, 3, 2, dtype=D, checkpoint_steps=3, peephole=True)
    x = torch.randn(8, 2, 2, dtype=D, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: layer(x)[0], (x,))


def saved_bytes(layer, x) -> int:
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return sum(storages.values())


def test_saves_far_less_for_backward():
    """The stack keeps its input (T·B·I) and each layer's states every k steps: here about
    I + 2·2·H/k = 22 numbers a token against about 7·H a token and layer stored."""
    torch.manual_seed(0)
    x = torch.randn(400, 4, 16, requires_grad=True)
    plain = saved_bytes(tc.LSTM(16, 32, 2, use_kernel=True, peephole=True), x)
    chunked = saved_bytes(tc.LSTM(16, 32, 2, peephole=True, checkpoint_steps=20), x)
    assert chunked * 12 < plain


def test_off_when_not_training_and_bad_values():
    layer = tc.GRU(3, 4, checkpoint_steps=2)
    with torch.no_grad():
        y, _ = layer(torch.randn(9, 1, 3))
    assert y.shape == (9, 1, 4)
    with pytest.raises(ValueError, match="checkpoint_steps must be >= 0"):
        tc.GRU(3, 4, checkpoint_steps=-1)
    with pytest.raises(ValueError, match="checkpoint_steps must be an integer"):
        tc.GRU(3, 4, checkpoint_steps=2.5)
    with pytest.raises(ValueError, match="unidirectional"):
        tc.GRU(3, 4, bidirectional=True, checkpoint_steps=2)
    with pytest.raises(ValueError, match="at least one layer"):
        Stacked([], checkpoint_steps=2)


def test_bench_memory_measures_the_saving(tmp_path, capsys):
    out = tmp_path / "memory.json"
    rows = "torch.nn.LSTM,rnnkit.LSTM,rnnkit.LSTM checkpointed"
    args = ["--T", "1500", "--batch", "8", "--hidden", "64", "--checkpoint-steps", "50"]
    assert main_memory([*args, "--rows", rows, "--threads", "1", "--json", str(out)]) == 0
    records = {r["row"]: r for r in json.loads(out.read_text())["records"]}
    assert set(records) == set(rows.split(","))
    assert records["rnnkit.LSTM checkpointed"]["memory_ratio"] < 0.5
    assert records["rnnkit.LSTM checkpointed"]["checkpoint_steps"] == 50
    assert "peak training memory" in capsys.readouterr().out
    with pytest.raises(UserError, match="unknown row"):
        main_memory(["--rows", "torch.nn.Transformer"])
    with pytest.raises(UserError, match="--T must be at least 1"):
        main_memory(["--T", "0"])
