"""The LSTM's fast paths equal the generic path: torch's fused op for the plain, unmasked LSTM
(``rnnkit.kernels.lstm.BACKEND``), the hand-derived kernel, and ``Recurrent``'s one-step path
without autograd (a sampler's call)."""

from __future__ import annotations

import pytest
import torch
from torch.func import functional_call
from torch.testing import assert_close

import rnnkit
import rnnkit.kernels.lstm as kernels
import rnnkit.layers.stacked as stacked
from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels import KERNELS
from rnnkit.layers.recurrent import Recurrent

D = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-10}


@pytest.fixture
def calls(monkeypatch):
    """Counts the calls of the fused dispatch and of the hand-derived kernel."""
    counts = {"fused": 0, "kernel": 0}

    def counting(name, fn):
        def wrapper(*args, **kwargs):
            counts[name] += 1
            return fn(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(
        kernels, "lstm_sequence_fused", counting("fused", kernels.lstm_sequence_fused)
    )
    monkeypatch.setattr(kernels, "lstm_sequence", counting("kernel", kernels.lstm_sequence))
    # a stack of plain LSTM layers takes the fused op in one call for all layers
    monkeypatch.setattr(stacked, "fused_lstm_stack", counting("fused", stacked.fused_lstm_stack))
    return counts


def outputs_and_grads(layer, x, hx, lengths):
    """Outputs, final states and the gradients w.r.t. x, h0, c0 and every parameter."""
    y, (h, c) = layer(x, hx, lengths=lengths)
    torch.manual_seed(7)
    loss = sum((t * torch.randn_like(t)).sum() for t in (y, h, c))
    grads = torch.autograd.grad(loss, (x, *hx, *layer.parameters()))
    return (y, h, c, *grads)


def lstm_pair(dtype=D, **kw):
    torch.manual_seed(0)
    fast = rnnkit.LSTM(3, 4, **kw).to(dtype)
    generic = rnnkit.LSTM(3, 4, use_kernel=False, **kw).to(dtype)
    generic.load_state_dict(fast.state_dict())
    return fast, generic


def inputs(T, B, L, dtype=D, batch_first=False):
    x = torch.randn(*((B, T) if batch_first else (T, B)), 3, dtype=dtype, requires_grad=True)
    hx = tuple(torch.randn(L, B, 4, dtype=dtype, requires_grad=True) for _ in range(2))
    return x, hx


@pytest.mark.parametrize("backend", ["torch", "rnnkit", "auto"])
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
def test_backends_equal_generic_float64(calls, backend, with_lengths, bidirectional):
    kw = {"num_layers": 2, "bidirectional": bidirectional, "batch_first": True}
    fast, generic = lstm_pair(**kw)
    L = 2 * (2 if bidirectional else 1)
    x, hx = inputs(6, 4, L, batch_first=True)
    lengths = torch.tensor([6, 2, 5, 1]) if with_lengths else None
    with kernels.set_lstm_backend(backend):
        got = outputs_and_grads(fast, x, hx, lengths)
    want = outputs_and_grads(generic, x, hx, lengths)
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, **TOL)
    # the fused op only for an unmasked batch, and in float64 only when asked for by name
    fused = backend == "torch" and not with_lengths
    assert (calls["fused"] > 0, calls["kernel"] > 0) == (fused, not fused)


@pytest.mark.parametrize("opts", [{"peephole": True}, {"layer_norm": True}, {"bias": False}])
def test_options_and_no_bias_under_fused_backend(calls, opts):
    """Peephole and layer_norm run the hand kernel whatever the backend; no bias runs fused."""
    fast, generic = lstm_pair(**opts)
    x, hx = inputs(5, 3, 1)
    with kernels.set_lstm_backend("torch"):
        got = outputs_and_grads(fast, x, hx, None)
    for a, b in zip(got, outputs_and_grads(generic, x, hx, None), strict=True):
        assert_close(a, b, **TOL)
    plain = opts == {"bias": False}
    assert (calls["fused"] > 0, calls["kernel"] > 0) == (plain, not plain)


def test_auto_uses_fused_op_in_float32_only_for_two_steps_or_more(calls):
    fast, _ = lstm_pair(torch.float32)
    theirs = torch.nn.LSTM(3, 4)
    theirs.load_state_dict(fast.state_dict())
    x, hx = inputs(5, 3, 1, torch.float32)
    got = outputs_and_grads(fast, x, hx, None)
    assert calls == {"fused": 1, "kernel": 0}
    y, (h, c) = theirs(x, hx)
    torch.manual_seed(7)
    loss = sum((t * torch.randn_like(t)).sum() for t in (y, h, c))
    want = (y, h, c, *torch.autograd.grad(loss, (x, *hx, *theirs.parameters())))
    for a, b in zip(got, want, strict=True):
        assert_close(a, b, rtol=1e-5, atol=1e-5)
    outputs_and_grads(fast, x[:1], hx, None)  # T = 1 under autograd: the hand kernel
    onednn, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False
    try:
        outputs_and_grads(fast, x, hx, None)  # no oneDNN: the hand kernel
    finally:
        torch.backends.mkldnn.enabled = onednn
    outputs_and_grads(fast.double(), x.double(), tuple(h.double() for h in hx), None)
    assert calls == {"fused": 1, "kernel": 3}


def test_fused_gradcheck_float64(calls):
    T, B, I, H = 4, 3, 3, 2
    torch.manual_seed(0)
    cell = LSTMCell(I, H, dtype=D)
    layer = Recurrent(cell)
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    xs = torch.randn(T, B, I, dtype=D, requires_grad=True)
    h0 = torch.randn(B, H, dtype=D, requires_grad=True)
    c0 = torch.randn(B, H, dtype=D, requires_grad=True)

    def fn(xs, h0, c0, *ps):
        p = {f"cell.{n}": v for n, v in zip(names, ps, strict=True)}
        ys, (h, c) = functional_call(layer, p, (xs, (h0, c0)), {"reverse": True})
        return ys, h, c

    with kernels.set_lstm_backend("torch"):
        assert torch.autograd.gradcheck(fn, (xs, h0, c0, *params))
    assert calls["fused"] > 0 and calls["kernel"] == 0


def test_empty_sequence_under_fused_backend():
    layer = Recurrent(LSTMCell(3, 4, dtype=D))
    h0, c0 = torch.randn(2, 4, dtype=D), torch.randn(2, 4, dtype=D)
    with kernels.set_lstm_backend("torch"):
        ys, (h, c) = layer(torch.randn(0, 2, 3, dtype=D), (h0, c0))
    assert ys.shape == (0, 2, 4)
    assert_close((h, c), (h0, c0))


def test_backend_switch_and_error():
    assert kernels.BACKEND == "auto"
    with kernels.set_lstm_backend("rnnkit") as ctx:
        assert kernels.BACKEND == "rnnkit"
        with kernels.set_lstm_backend("torch"):
            assert kernels.BACKEND == "torch"
        assert kernels.BACKEND == "rnnkit"
    assert kernels.BACKEND == "auto" and ctx.previous == "auto"
    try:
        kernels.set_lstm_backend("rnnkit")  # as a plain call: stays set
        assert kernels.BACKEND == "rnnkit"
    finally:
        kernels.set_lstm_backend("auto")
    with pytest.raises(ValueError, match=r"lstm backend must be one of .*got 'cudnn'"):
        kernels.set_lstm_backend("cudnn")
    assert kernels.BACKEND == "auto"


def test_hand_kernel_backward_twice_with_retain_graph():
    """Backward works on fresh buffers: a second backward through the same graph agrees."""
    torch.manual_seed(0)
    cell = LSTMCell(3, 4, dtype=D, peephole=True, layer_norm=True)
    xs = torch.randn(5, 3, 3, dtype=D, requires_grad=True)
    ys, (h, c) = Recurrent(cell)(xs, lengths=torch.tensor([5, 2, 4]))
    loss = (ys * torch.randn_like(ys)).sum() + h.sum() + c.sum()
    first = torch.autograd.grad(loss, (xs, *cell.parameters()), retain_graph=True)
    second = torch.autograd.grad(loss, (xs, *cell.parameters()))
    for a, b in zip(first, second, strict=True):
        assert_close(a, b, rtol=0, atol=0)


# --- the one-step path of Recurrent: T = 1, no mask, autograd not recording ---


def forbid_kernels(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the one-step path should not reach a kernel")

    for cls in (rnnkit.LSTMCell, rnnkit.GRUCell, rnnkit.ElmanCell):
        monkeypatch.setitem(KERNELS, cls, fail)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("opts", [{}, {"peephole": True, "layer_norm": True}], ids=["plain", "pln"])
def test_one_step_no_grad_equals_kernel_and_skips_it(monkeypatch, opts, reverse):
    torch.manual_seed(0)
    cell = LSTMCell(3, 4, dtype=D, **opts)
    layer = Recurrent(cell)
    x = torch.randn(1, 2, 3, dtype=D)
    state = (torch.randn(2, 4, dtype=D), torch.randn(2, 4, dtype=D))
    want_y, (want_h, want_c) = layer(x.requires_grad_(), state, reverse=reverse)  # the kernel
    x = x.detach()
    forbid_kernels(monkeypatch)
    with torch.no_grad():
        y, (h, c) = layer(x, state, reverse=reverse)
    assert y.grad_fn is None and y.shape == (1, 2, 4)
    assert_close((y, h, c), (want_y, want_h, want_c), **TOL)
    y.zero_()  # the outputs do not alias the state
    assert h.abs().sum() > 0
    # grad mode on but nothing requires grad (frozen parameters): the one-step path too
    cell.requires_grad_(False)
    y2, _ = layer(x, state, reverse=reverse)
    assert y2.grad_fn is None
    assert_close(y2, want_y, **TOL)


def test_one_step_takes_the_kernel_when_recording_or_masked(calls):
    cell = LSTMCell(3, 4, dtype=D, peephole=True)
    layer = Recurrent(cell)
    x = torch.randn(1, 2, 3, dtype=D)
    y, _ = layer(x)  # parameters require grad
    assert y.grad_fn is not None and calls["kernel"] == 1
    with torch.no_grad():
        layer(x, lengths=torch.tensor([1, 0]))  # a mask: the kernel
    assert calls["kernel"] == 2
    cell.requires_grad_(False)
    h0 = torch.zeros(2, 4, dtype=D, requires_grad=True)
    y, _ = layer(x, (h0, torch.zeros(2, 4, dtype=D)))  # a state that requires grad
    assert y.grad_fn is not None and calls["kernel"] == 3


@pytest.mark.parametrize(
    "make",
    [
        lambda: rnnkit.LSTM(3, 5, num_layers=2),
        lambda: rnnkit.LSTM(3, 5, num_layers=2, peephole=True, layer_norm=True),
        lambda: rnnkit.GRU(3, 5, num_layers=2),
        lambda: rnnkit.RNN(3, 5, num_layers=2, batch_first=True),
    ],
    ids=["lstm", "lstm-pln", "gru", "rnn-batch-first"],
)
def test_stepping_with_carried_state_equals_one_call(monkeypatch, make):
    torch.manual_seed(0)
    layer = make().double()
    T = 6
    shape = (2, T, 3) if layer.batch_first else (T, 2, 3)
    x = torch.randn(*shape, dtype=D)
    with torch.no_grad():
        want, want_hn = layer(x)
        forbid_kernels(monkeypatch)
        hx, ys = None, []
        for step in x.split(1, dim=1 if layer.batch_first else 0):
            y, hx = layer(step, hx)
            ys.append(y)
    got = torch.cat(ys, dim=1 if layer.batch_first else 0)
    assert_close(got, want, **TOL)
    assert_close(hx, want_hn, **TOL)


def test_one_backend_api_for_both_fast_paths():
    """rnnkit.kernels.backends switches and queries the LSTM backend and the step backend; the
    former switches and module attributes read and write the same settings."""
    from rnnkit.kernels.backends import get_backend, set_backend
    from rnnkit.layers import stepper

    assert get_backend("lstm") == kernels.BACKEND == "auto"
    assert get_backend("step") == stepper.BACKEND == "auto"
    with set_backend("step", "torch") as ctx, set_backend("lstm", "rnnkit"):
        assert get_backend("step") == stepper.BACKEND == "torch"
        assert kernels.BACKEND == "rnnkit"
    assert ctx.previous == "auto" and get_backend("step") == get_backend("lstm") == "auto"
    with stepper.set_step_backend("off"):
        assert get_backend("step") == "off"
    assert get_backend("step") == "auto"
    with pytest.raises(
        ValueError,
        match=r"backend name must be one of \['lstm', 'step', 'fused', 'packed', 'rebuild', "
        r"'onednn', 'elman', 'gru'\]",
    ):
        get_backend("gpu")
    with pytest.raises(ValueError, match=r"step backend must be one of .*got 'fast'"):
        set_backend("step", "fast")


def test_a_plain_lstm_stack_is_one_fused_call_as_torch_nn_makes_it(calls):
    """Plain LSTM layers without residual connections or training dropout run as one call of
    torch's fused op with every layer's weights: torch.nn.LSTM's own call, the same outputs,
    final states and gradients as torch.nn.LSTM on the same weights. Residual connections,
    training dropout or a hook on a layer go layer by layer."""
    torch.manual_seed(0)
    ours = rnnkit.LSTM(3, 4, num_layers=3)
    theirs = torch.nn.LSTM(3, 4, num_layers=3)
    theirs.load_state_dict(ours.state_dict())
    x, hx = inputs(6, 2, 3, dtype=torch.float32)
    got = outputs_and_grads(ours, x, hx, None)
    y, (h, c) = theirs(x, hx)
    torch.manual_seed(7)
    loss = sum((t * torch.randn_like(t)).sum() for t in (y, h, c))
    want = (y, h, c, *torch.autograd.grad(loss, (x, *hx, *theirs.parameters())))
    for a, b in zip(got, want, strict=True):
        assert_close(a, b)
    assert calls["fused"] == 1 and calls["kernel"] == 0
    seen = []
    handle = ours._stack.layers[1].register_forward_hook(lambda *args: seen.append(1))
    ours(x, hx)
    handle.remove()
    assert seen == [1] and calls["fused"] == 1 + 3  # the hook ran: one call a layer
    ours.dropout = 0.5
    ours(x, hx)
    assert calls["fused"] == 1 + 3 + 3  # training dropout: layer by layer
    ours.eval()
    ours(x, hx)
    assert calls["fused"] == 1 + 3 + 3 + 1  # no dropout in eval: one call again


def test_lstm_layers_of_different_widths_go_layer_by_layer(calls):
    """Torch's fused op takes one hidden size for every layer: a stack whose widths differ (16
    then 32) runs layer by layer, with the outputs and final states of the layers in turn."""
    torch.manual_seed(0)
    stack = stacked.Stacked([Recurrent(LSTMCell(8, 16)), Recurrent(LSTMCell(16, 32))])
    x = torch.randn(5, 3, 8)
    y, finals = stack(x)
    assert calls["fused"] == 2  # one fused call a layer, not one for the stack
    h, want = x, []
    for layer in stack.layers:
        h, state = layer(h)
        want.append(state)
    assert_close(y, h)
    for got, ref in zip(finals, want, strict=True):
        assert_close(got, ref)
    assert [s[0].shape[-1] for s in finals] == [16, 32]
