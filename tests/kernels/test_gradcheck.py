"""The BPTT engine's proof: gradcheck in float64 for every cell and option, through whole layers.

Every built-in cell and option x {1, 2 layers} x {uni-, bidirectional} x {with, without lengths},
gradients w.r.t. the inputs, the initial states and every parameter, through the hand-derived
kernels; and the kernels equal the generic autograd path, values and gradients.
"""

import itertools

import pytest
import torch
from torch.testing import assert_close

import rnnkit

D = torch.float64
SPECS = {
    "elman-tanh": (rnnkit.RNN, {"nonlinearity": "tanh"}),
    "elman-relu": (rnnkit.RNN, {"nonlinearity": "relu"}),
    "elman-sigmoid": (rnnkit.RNN, {"nonlinearity": "sigmoid"}),
    "elman-identity": (rnnkit.RNN, {"nonlinearity": "identity"}),
    "jordan-identity": (rnnkit.JordanRNN, {"output_size": 3}),
    "jordan-tanh": (rnnkit.JordanRNN, {"output_nonlinearity": "tanh"}),
    "jordan-sigmoid": (
        rnnkit.JordanRNN,
        {"output_nonlinearity": "sigmoid", "nonlinearity": "relu"},
    ),
    "jordan-softmax": (rnnkit.JordanRNN, {"output_nonlinearity": "softmax", "output_size": 3}),
    "lstm": (rnnkit.LSTM, {}),
    "lstm-peephole": (rnnkit.LSTM, {"peephole": True}),
    "lstm-layernorm": (rnnkit.LSTM, {"layer_norm": True}),
    "lstm-peephole-layernorm": (rnnkit.LSTM, {"peephole": True, "layer_norm": True}),
    "lstm-forgetbias": (rnnkit.LSTM, {"forget_bias": 1.0}),
    "lstm-nobias": (rnnkit.LSTM, {"bias": False}),
    "gru-reset-after": (rnnkit.GRU, {}),
    "gru-reset-before": (rnnkit.GRU, {"reset_after": False}),
    "gru-nobias": (rnnkit.GRU, {"bias": False}),
    "minimal-gru": (rnnkit.MinimalGRU, {}),
}
T, B, I, H = 3, 2, 2, 2
LENGTHS = torch.tensor([3, 1])


def build(spec, num_layers, bidirectional, use_kernel=True):
    cls, options = SPECS[spec]
    layer = cls(
        I, H, num_layers=num_layers, bidirectional=bidirectional, use_kernel=use_kernel, **options
    )
    layer = layer.to(D)
    with torch.no_grad():  # move layer-norm gains and peepholes off their initial values
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return layer


def initial_state(layer, num_layers, bidirectional, batch=B):
    L = num_layers * (2 if bidirectional else 1)
    return tuple(
        torch.randn(L, batch, size, dtype=D, requires_grad=True) for size in layer.state_sizes
    )


def as_function(layer, names, n_state, lengths):
    def f(x, *args):
        states, params = args[:n_state], args[n_state:]
        hx = states if n_state > 1 else states[0]
        y, hn = torch.func.functional_call(
            layer, dict(zip(names, params, strict=True)), (x, hx), {"lengths": lengths}
        )
        return (y, *(hn if isinstance(hn, tuple) else (hn,)))

    return f


GRID = list(itertools.product(SPECS, [1, 2], [False, True], [False, True]))


@pytest.mark.parametrize(
    "spec, num_layers, bidirectional, with_lengths",
    GRID,
    ids=[f"{s}-L{n}-{'bi' if b else 'uni'}-{'len' if w else 'full'}" for s, n, b, w in GRID],
)
def test_gradcheck(spec, num_layers, bidirectional, with_lengths):
    layer = build(spec, num_layers, bidirectional)
    names, params = zip(
        *[(k, p.detach().clone().requires_grad_()) for k, p in layer.named_parameters()],
        strict=True,
    )
    hx = initial_state(layer, num_layers, bidirectional)
    x = torch.randn(T, B, I, dtype=D, requires_grad=True)
    f = as_function(layer, names, len(hx), LENGTHS if with_lengths else None)
    assert torch.autograd.gradcheck(f, (x, *hx, *params))


@pytest.mark.parametrize("spec", list(SPECS))
def test_kernel_equals_generic_path(spec):
    """Values and every gradient, on a bigger random problem than gradcheck's."""
    kernel = build(spec, 2, True, use_kernel=True)
    generic = build(spec, 2, True, use_kernel=False)
    generic.load_state_dict(kernel.state_dict())
    x = torch.randn(9, 4, I, dtype=D, requires_grad=True)
    hx = initial_state(kernel, 2, True, batch=4)
    lengths = torch.tensor([9, 4, 1, 7])
    outs = []
    for layer in (kernel, generic):
        y, hn = layer(x, hx if len(hx) > 1 else hx[0], lengths=lengths)
        hn = hn if isinstance(hn, tuple) else (hn,)
        torch.manual_seed(5)
        loss = sum((t * torch.randn_like(t)).sum() for t in (y, *hn))
        outs.append((y, *hn, *torch.autograd.grad(loss, (x, *hx, *layer.parameters()))))
    for a, b in zip(*outs, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)
