"""The one-step no-grad path of the torch-compatible layers (``rnnkit.layers.stepper``): every
backend equals the generic path (the cells' forward) and torch.nn, its weight cache follows the
parameters, and it steps aside whenever it would compute something else."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from rnnkit.layers import stepper
from rnnkit.layers import torch_compat as tc

LAYERS = [
    ("LSTM", {}),
    ("LSTM", {"peephole": True}),
    ("LSTM", {"bias": False}),
    ("GRU", {}),
    ("GRU", {"reset_after": False}),
    ("GRU", {"reset_after": False, "bias": False}),
    ("RNN", {}),
    ("RNN", {"nonlinearity": "relu"}),
    ("RNN", {"nonlinearity": "sigmoid"}),
    ("RNN", {"nonlinearity": "identity"}),
    ("MinimalGRU", {}),
]
TOL = {
    torch.float64: {"rtol": 1e-12, "atol": 1e-12},
    torch.float32: {"rtol": 1e-5, "atol": 1e-5},
}


@pytest.fixture
def backend():
    """Restores the step backend after a test that switches it."""
    yield stepper.set_step_backend
    stepper.set_step_backend("auto")


def make(name: str, opts: dict, dtype=torch.float64, num_layers: int = 2, **kw):
    torch.manual_seed(0)
    layer = getattr(tc, name)(5, 7, num_layers, dtype=dtype, **opts, **kw)
    for p in layer.parameters():
        nn.init.uniform_(p, -0.6, 0.6)
    return layer


def call(layer, backend_name: str, x, hx):
    stepper.set_step_backend(backend_name)
    with torch.no_grad():
        return layer(x, hx)


def flat(out) -> list[torch.Tensor]:
    y, h = out
    return [y, *(h if isinstance(h, tuple) else (h,))]


@pytest.mark.parametrize("name, opts", LAYERS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("fast", ["torch", "numpy"])
@pytest.mark.parametrize("layout", ["time_first", "batch_first", "unbatched"])
def test_backends_equal_the_generic_path(backend, name, opts, dtype, fast, layout):
    layer = make(name, opts, dtype, batch_first=layout == "batch_first")
    B = 3
    if layout == "unbatched":
        x = torch.randn(1, 5, dtype=dtype)
        hx = [torch.randn(2, 7, dtype=dtype) for _ in layer.state_sizes]
    else:
        x = torch.randn(B, 1, 5, dtype=dtype) if layout == "batch_first" else torch.randn(1, B, 5)
        x = x.to(dtype)
        hx = [torch.randn(2, B, 7, dtype=dtype) for _ in layer.state_sizes]
    for state in (None, tuple(hx) if len(hx) > 1 else hx[0]):
        before = [t.clone() for t in hx]
        want = flat(call(layer, "off", x, state))
        got = flat(call(layer, fast, x, state))
        assert [t.shape for t in got] == [t.shape for t in want]
        for g, w in zip(got, want, strict=True):
            assert g.dtype == w.dtype and g.is_contiguous()
            assert_close(g, w, **TOL[dtype])
        assert all(torch.equal(a, b) for a, b in zip(hx, before, strict=True))  # not mutated
        storages = {t.untyped_storage().data_ptr() for t in got}
        assert len(storages) == len(got)  # output and states do not alias one another


OP_LAYERS = {
    ("GRU", ()),
    ("GRU", (("bias", False),)),
    ("RNN", ()),
    ("RNN", (("nonlinearity", "relu"),)),
}
"""The stacks that "auto" steps through torch's own op where it would take the torch backend."""


@pytest.mark.parametrize("name, opts", LAYERS + [("GRU", {"bias": False})])
@pytest.mark.parametrize("layout", ["time_first", "batch_first", "unbatched"])
def test_auto_steps_gru_and_elman_stacks_through_torchs_op_with_the_same_result(
    backend, monkeypatch, name, opts, layout
):
    """At two intra-op threads "auto" takes the torch backend, and for a GRU (reset after) or a
    tanh or ReLU Elman stack calls torch's RNN op over the stack instead: equal to the generic
    path (float64), with or without a state; the other stacks keep the step functions."""
    dtype = torch.float64
    layer = make(name, opts, dtype, batch_first=layout == "batch_first")
    if layout == "unbatched":
        x, hx = torch.randn(1, 5, dtype=dtype), torch.randn(2, 7, dtype=dtype)
    else:
        x = torch.randn(3, 1, 5) if layout == "batch_first" else torch.randn(1, 3, 5)
        x, hx = x.to(dtype), torch.randn(2, 3, 7, dtype=dtype)
    state = tuple(hx for _ in layer.state_sizes) if len(layer.state_sizes) > 1 else hx
    taken = []
    op_step = stepper.op_step
    monkeypatch.setattr(stepper, "op_step", lambda *a: taken.append(1) or op_step(*a))
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        for s in (None, state):
            want = flat(call(layer, "off", x, s))
            got = flat(call(layer, "auto", x, s))
            for g, w in zip(got, want, strict=True):
                assert g.shape == w.shape and g.is_contiguous()
                assert_close(g, w, **TOL[dtype])
            assert len({t.untyped_storage().data_ptr() for t in got}) == len(got)
    finally:
        torch.set_num_threads(before)
    assert bool(taken) == ((name, tuple(sorted(opts.items()))) in OP_LAYERS)


@pytest.mark.parametrize("fast", ["torch", "numpy"])
@pytest.mark.parametrize("name", ["LSTM", "GRU", "RNN"])
def test_sampling_loop_equals_torch_nn(backend, fast, name):
    """Twenty steps with the state carried, on torch.nn's weights: the sampler's loop."""
    torch.manual_seed(1)
    theirs = getattr(nn, name)(6, 8, 2).double()
    ours = getattr(tc, name)(6, 8, 2, dtype=torch.float64)
    ours.load_state_dict(theirs.state_dict())
    backend(fast)
    xs = torch.randn(20, 1, 2, 6, dtype=torch.float64)
    s_ours = s_theirs = None
    with torch.no_grad():
        for x in xs:
            y_ours, s_ours = ours(x, s_ours)
            y_theirs, s_theirs = theirs(x, s_theirs)
            assert_close(y_ours, y_theirs, rtol=1e-10, atol=1e-10)
    for a, b in zip(flat((y_ours, s_ours)), flat((y_theirs, s_theirs)), strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fast", ["torch", "numpy"])
def test_weight_cache_follows_the_parameters(backend, fast):
    layer = make("LSTM", {})
    x = torch.randn(1, 2, 5, dtype=torch.float64)
    first = call(layer, fast, x, None)[0]
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)  # an in-place update bumps the versions
    layer(torch.randn(4, 2, 5, dtype=torch.float64))[0].sum().backward()
    opt.step()
    after_step = call(layer, fast, x, None)[0]
    assert not torch.allclose(first, after_step)
    assert_close(after_step, call(layer, "off", x, None)[0], rtol=1e-12, atol=1e-12)
    other = make("LSTM", {})
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(0.5)
    layer.load_state_dict(other.state_dict())
    assert_close(call(layer, fast, x, None)[0], call(other, "off", x, None)[0])
    layer.weight_hh_l1 = nn.Parameter(torch.zeros_like(layer.weight_hh_l1))  # a new tensor
    assert_close(call(layer, fast, x, None)[0], call(layer, "off", x, None)[0])


def test_steps_aside_when_it_would_compute_something_else(monkeypatch):
    taken = []
    original = stepper._run
    monkeypatch.setattr(stepper, "_run", lambda *a: taken.append(1) or original(*a))
    x1, x2 = torch.randn(1, 2, 5), torch.randn(2, 2, 5)
    plain = tc.LSTM(5, 7, 2)
    plain(x1)  # grad mode on and the parameters need grad: autograd must see the step
    plain(x2)  # two steps
    with torch.no_grad():
        plain(x1, lengths=torch.tensor([1, 0]))  # lengths
        tc.LSTM(5, 7, layer_norm=True)(x1)
        tc.LSTM(5, 7, bidirectional=True)(x1)
        tc.JordanRNN(5, 7)(x1)
        tc.GRU(5, 7, 2, residual=True)(x1[..., :5].expand(1, 2, 5))
        tc.GRU(5, 7, 2, dropout=0.5).train()(x1)  # active dropout
        with pytest.raises(RuntimeError):  # dtypes differ: the usual path raises torch's error
            tc.GRU(5, 7).double()(x1)
    assert taken == []
    with torch.no_grad():
        plain(x1)
        tc.GRU(5, 7, 2, dropout=0.5).eval()(x1)
    assert taken == [1, 1]
    out, _ = plain(x1)
    assert out.grad_fn is not None


def test_bad_state_still_reported_by_the_usual_path():
    layer = tc.GRU(5, 7, 2)
    with torch.no_grad(), pytest.raises(ValueError, match="hx must have shape"):
        layer(torch.randn(1, 2, 5), torch.zeros(2, 3, 7))


def test_backend_names():
    with pytest.raises(ValueError, match="step backend must be one of"):
        stepper.set_step_backend("fast")


def test_auto_takes_numpy_only_at_one_intra_op_thread(backend):
    """Beside torch's spinning team of two or more threads, numpy's BLAS threads contend for the
    same cores: "auto" then takes the torch backend."""
    x = torch.zeros(1, 1, 5)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert stepper._backend(x) == "numpy"
        assert stepper._backend(x.to(torch.bfloat16)) == "torch"
        torch.set_num_threads(2)
        assert stepper._backend(x) == "torch"
        backend("numpy")
        assert stepper._backend(x) == "numpy"  # a backend set by name is taken as it is
    finally:
        torch.set_num_threads(before)
