"""Second derivatives through the hand-derived kernels: gradgradcheck in float64 for every cell
and option, a gradient penalty against torch.nn on the same weights, and the dispatch rule that
sends a user's subclass of a built-in cell through the generic loop.
"""

import pytest
import torch
from test_gradcheck import LENGTHS, SPECS, B, D, I, T, as_function, build, initial_state
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from torch.testing import assert_close

import rnnkit
from rnnkit.kernels import gru as gru_kernel
from rnnkit.kernels import lstm as lstm_kernel

# Every cell and option in one layer; one of each family bidirectional with lengths (masks and
# reversal); the whole grid deep and bidirectional with lengths in the slow job.
FAMILIES = ["elman-relu", "jordan-softmax", "lstm-peephole", "gru-reset-before", "minimal-gru"]
GRID = [(spec, 1, False, False) for spec in SPECS] + [(s, 1, True, True) for s in FAMILIES]
GRID += [pytest.param(spec, 2, True, True, marks=pytest.mark.slow) for spec in SPECS]


def grid_id(case) -> str:
    s, n, b, w = case.values if hasattr(case, "values") else case
    return f"{s}-L{n}-{'bi' if b else 'uni'}-{'len' if w else 'full'}"


@pytest.mark.parametrize(
    "spec, num_layers, bidirectional, with_lengths", GRID, ids=[grid_id(c) for c in GRID]
)
def test_gradgradcheck(spec, num_layers, bidirectional, with_lengths):
    """Every input, initial state and parameter, through the kernels (as PyTorch's
    test_LSTM_grad_and_gradgrad / test_GRU_grad_and_gradgrad and test_modules' test_gradgrad)."""
    layer = build(spec, num_layers, bidirectional)
    names, params = zip(
        *[(k, p.detach().clone().requires_grad_()) for k, p in layer.named_parameters()],
        strict=True,
    )
    hx = initial_state(layer, num_layers, bidirectional)
    x = torch.randn(T, B, I, dtype=D, requires_grad=True)
    f = as_function(layer, names, len(hx), LENGTHS if with_lengths else None)
    assert torch.autograd.gradgradcheck(f, (x, *hx, *params))


@pytest.mark.parametrize("backend", ["torch", "rnnkit"])
def test_gradgradcheck_lstm_backends(backend):
    """The plain LSTM on either backend: torch's fused op and the hand-derived kernel."""
    layer = build("lstm", 2, False)
    hx = initial_state(layer, 2, False)
    x = torch.randn(T, B, I, dtype=D, requires_grad=True)
    with lstm_kernel.set_lstm_backend(backend):
        assert torch.autograd.gradgradcheck(lambda x, h, c: layer(x, (h, c))[0], (x, *hx))


def penalty_grads(layer, x, packed_lengths=None):
    """Gradients of a gradient penalty ‖∂L/∂x‖², L = Σ y²: a function of the backward."""
    x = x.detach().clone().requires_grad_()
    inp = x if packed_lengths is None else pack_padded_sequence(x, packed_lengths)
    y, _ = layer(inp)
    if packed_lengths is not None:
        y = pad_packed_sequence(y)[0]
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    layer.zero_grad()
    g.square().sum().backward()
    return [x.grad] + [p.grad for p in layer.parameters()]


@pytest.mark.parametrize(
    "ours, theirs, packed",
    [
        (rnnkit.RNN, torch.nn.RNN, False),
        (rnnkit.GRU, torch.nn.GRU, False),
        (rnnkit.LSTM, torch.nn.LSTM, False),
        (rnnkit.LSTM, torch.nn.LSTM, True),
        (rnnkit.GRU, torch.nn.GRU, True),
    ],
    ids=["rnn", "gru", "lstm", "lstm-packed", "gru-packed"],
)
def test_gradient_penalty_equals_torch(ours, theirs, packed):
    """The issue's case: every weight gradient of a gradient penalty, as torch.nn gives it."""
    reference = theirs(3, 4, num_layers=2, bidirectional=packed).to(D)
    layer = ours(3, 4, num_layers=2, bidirectional=packed).to(D)
    layer.load_state_dict(reference.state_dict())
    x = torch.randn(5, 3, 3, dtype=D)
    lengths = torch.tensor([5, 4, 2]) if packed else None
    got, want = penalty_grads(layer, x, lengths), penalty_grads(reference, x, lengths)
    assert all(g is not None for g in got)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b)


def test_float32_fused_lstm_second_derivatives_match_generic():
    """float32 on the CPU takes torch's fused op: its second derivatives as the generic path's."""
    fused = rnnkit.LSTM(3, 4, num_layers=2)
    generic = rnnkit.LSTM(3, 4, num_layers=2, use_kernel=False)
    generic.load_state_dict(fused.state_dict())
    x = torch.randn(6, 2, 3)
    got, want = penalty_grads(fused, x), penalty_grads(generic, x)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_kernel_called_without_origin_refuses_second_derivatives():
    """A kernel Function applied directly (not through a layer) has no origin to recompute
    from: first derivatives work, second ones raise a clear error rather than a wrong value."""
    cell = rnnkit.GRUCell(2, 3).to(D)
    xs = torch.randn(4, 2, 2, dtype=D, requires_grad=True)
    xg = torch.nn.functional.linear(xs, cell.weight_ih, cell.bias_ih)
    ys, _ = gru_kernel.gru_sequence(cell, xg, torch.zeros(2, 3, dtype=D), None)
    (g,) = torch.autograd.grad(ys.sum(), xs)  # first order: fine
    assert g.shape == xs.shape
    ys, _ = gru_kernel.gru_sequence(cell, xg, torch.zeros(2, 3, dtype=D), None)
    with pytest.raises(RuntimeError, match="second derivatives .* origin"):
        torch.autograd.grad(ys.sum(), xs, create_graph=True)


class Doubled(rnnkit.LSTMCell):
    """A user's cell: an LSTM step whose output and hidden state are doubled."""

    def forward(self, x, state):
        h, (h, c) = super().forward(x, state)
        return 2 * h, (2 * h, c)


def test_subclass_that_overrides_forward_runs_its_own_forward():
    """Recurrent dispatches on the exact type: the subclass is not the kernel's LSTM."""
    torch.manual_seed(0)
    cell = Doubled(3, 4).to(D)
    xs = torch.randn(5, 2, 3, dtype=D, requires_grad=True)
    ys, (h, c) = rnnkit.Recurrent(cell)(xs)
    state = cell.init_state(2)
    for t, x in enumerate(xs.unbind(0)):  # the reference: the cell stepped by hand
        y, state = cell(x, state)
        assert_close(ys[t], y)
    assert_close(h, state[0])
    plain = rnnkit.LSTMCell(3, 4).to(D)
    plain.load_state_dict(cell.state_dict())
    assert not torch.allclose(rnnkit.Recurrent(plain)(xs)[0], ys)


def test_gradient_penalty_through_checkpointing_through_time():
    """checkpoint_steps recomputes chunks in backward: second derivatives stay the same."""
    plain = rnnkit.GRU(3, 4, num_layers=2).to(D)
    chunked = rnnkit.GRU(3, 4, num_layers=2, checkpoint_steps=2).to(D)
    chunked.load_state_dict(plain.state_dict())
    x = torch.randn(7, 2, 3, dtype=D)
    for a, b in zip(penalty_grads(chunked, x), penalty_grads(plain, x), strict=True):
        assert_close(a, b)
