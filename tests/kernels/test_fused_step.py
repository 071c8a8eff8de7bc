"""The compiled inner step (rnnkit.kernels.fused) against the PyTorch ops it replaces: values and
gradients equal for every integrated cell, float64 and float32, with variable lengths; gradcheck
with the compiled step on; the fallback without a compiler says so once."""

from __future__ import annotations

import os

import pytest
import torch

from rnnkit.cells import ElmanCell, GRUCell, JordanCell, LSTMCell, MinimalGRUCell
from rnnkit.kernels import fused, set_backend
from rnnkit.layers.recurrent import Recurrent

CELLS = {
    "gru": lambda I, H, dt: GRUCell(I, H, reset_after=True, dtype=dt),
    "gru-nobias": lambda I, H, dt: GRUCell(I, H, bias=False, reset_after=True, dtype=dt),
    "gru-reset-before": lambda I, H, dt: GRUCell(I, H, reset_after=False, dtype=dt),
    "gru-reset-before-nobias": lambda I, H, dt: GRUCell(
        I, H, bias=False, reset_after=False, dtype=dt
    ),
    "elman-tanh": lambda I, H, dt: ElmanCell(I, H, dtype=dt),
    "elman-relu": lambda I, H, dt: ElmanCell(I, H, nonlinearity="relu", dtype=dt),
    "elman-sigmoid": lambda I, H, dt: ElmanCell(I, H, nonlinearity="sigmoid", dtype=dt),
    "elman-identity": lambda I, H, dt: ElmanCell(I, H, nonlinearity="identity", dtype=dt),
    "mgru": lambda I, H, dt: MinimalGRUCell(I, H, dtype=dt),
    "jordan": lambda I, H, dt: JordanCell(I, H, output_size=4, dtype=dt),
    "jordan-tanh": lambda I, H, dt: JordanCell(
        I, H, output_size=4, nonlinearity="relu", output_nonlinearity="tanh", dtype=dt
    ),
    "jordan-sigmoid": lambda I, H, dt: JordanCell(I, H, output_nonlinearity="sigmoid", dtype=dt),
    "lstm": lambda I, H, dt: LSTMCell(I, H, dtype=dt),
    "lstm-peephole": lambda I, H, dt: LSTMCell(I, H, peephole=True, dtype=dt),
    "lstm-layer-norm": lambda I, H, dt: LSTMCell(I, H, layer_norm=True, dtype=dt),
    "lstm-both": lambda I, H, dt: LSTMCell(I, H, peephole=True, layer_norm=True, dtype=dt),
}
LENGTHS = {"full": None, "ragged": [6, 2, 6, 1, 0]}  # T = 6, B = 5, one empty sequence
# float32: the compiled step sums layer norms in another order (in double), a few ulps apart
TOL = {torch.float64: {"rtol": 1e-12, "atol": 1e-12}, torch.float32: {"rtol": 1e-4, "atol": 1e-4}}

pytestmark = pytest.mark.skipif(not fused.available(), reason="no C++ compiler here")


def make_state(cell, B: int, dtype: torch.dtype):
    """A random initial state (a tensor, or a tuple for the LSTM) and its leaves."""
    leaves = [torch.randn(B, n, dtype=dtype, requires_grad=True) for n in cell.state_sizes]
    return (leaves[0] if len(leaves) == 1 else tuple(leaves)), leaves


def flat(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def run(name: str, dtype: torch.dtype, lengths, backend: str, T=6, B=5, I=3, H=7):
    """ys, the final state and the gradients of a weighted loss wrt xs, the initial state and the
    parameters."""
    torch.manual_seed(0)
    cell = CELLS[name](I, H, dtype)
    xs = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    state, leaves = make_state(cell, B, dtype)
    lengths = None if lengths is None else torch.tensor(lengths)
    with set_backend("fused", backend), set_backend("lstm", "rnnkit"):  # rnnkit's LSTM kernel
        assert (fused.step_ops(xs) is not None) == (backend == "compiled")
        ys, final = Recurrent(cell, use_kernel=True)(xs, state, lengths=lengths)
        outs = [ys, *flat(final)]
        loss = sum((o * torch.randn_like(o)).sum() for o in outs)
        grads = torch.autograd.grad(loss, [xs, *leaves, *cell.parameters()])
    return [o.detach() for o in outs], grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
@pytest.mark.parametrize("name", CELLS)
def test_compiled_equals_torch_ops(name: str, lengths, dtype: torch.dtype) -> None:
    compiled = run(name, dtype, lengths, "compiled")
    ops = run(name, dtype, lengths, "torch")
    for oc, oo in zip(compiled[0], ops[0], strict=True):
        torch.testing.assert_close(oc, oo, **TOL[dtype])
    for gc, go in zip(compiled[1], ops[1], strict=True):
        torch.testing.assert_close(gc, go, **TOL[dtype])


@pytest.mark.parametrize("lengths", [None, [3, 1, 3]], ids=["full", "ragged"])
@pytest.mark.parametrize("name", CELLS)
def test_gradcheck_compiled(name: str, lengths) -> None:
    torch.manual_seed(0)
    cell = CELLS[name](2, 3, torch.float64)
    xs = torch.randn(3, 3, 2, dtype=torch.float64, requires_grad=True)
    state, leaves = make_state(cell, 3, torch.float64)
    lengths = None if lengths is None else torch.tensor(lengths)
    layer = Recurrent(cell, use_kernel=True)

    def f(xs, *leaves):
        ys, final = layer(xs, leaves[0] if len(leaves) == 1 else leaves, lengths=lengths)
        return ys, *flat(final)

    grads = {}
    for backend in ("compiled", "torch"):
        with set_backend("fused", backend), set_backend("lstm", "rnnkit"):
            if backend == "compiled":
                assert torch.autograd.gradcheck(f, (xs, *leaves))
            loss = sum(o.sum() for o in f(xs, *leaves))
            grads[backend] = torch.autograd.grad(loss, list(cell.parameters()))
    for g, e in zip(grads["compiled"], grads["torch"], strict=True):
        torch.testing.assert_close(g, e)  # the parameters' gradients, against the PyTorch ops


def test_strided_inputs() -> None:
    """An expanded output gradient (stride 0) and a non-contiguous h0 give the same result."""
    torch.manual_seed(0)
    cell = GRUCell(3, 4, dtype=torch.float64)
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    h0 = torch.randn(4, 2, dtype=torch.float64).t().requires_grad_()  # (2, 4), column-major
    out = {}
    for backend in ("compiled", "torch"):
        with set_backend("fused", backend):
            ys, hT = Recurrent(cell, use_kernel=True)(xs, h0)
            out[backend] = (ys.detach(), *torch.autograd.grad(hT.sum() + 0 * ys.sum(), [h0]))
    for a, b in zip(out["compiled"], out["torch"], strict=True):
        torch.testing.assert_close(a, b)


def test_no_compiler_falls_back_and_says_so_once(monkeypatch, capsys) -> None:
    monkeypatch.setattr(fused, "_state", {})
    monkeypatch.setattr(fused, "_ops", {})
    monkeypatch.setattr(fused, "compiler", lambda: None)
    x = torch.zeros(2, 3)
    assert fused.step_ops(x) is None and fused.step_ops(x) is None
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no C++ compiler" in err and "using PyTorch ops" in err
    ys, _ = Recurrent(GRUCell(3, 4), use_kernel=True)(torch.randn(2, 1, 3))  # still runs
    assert ys.shape == (2, 1, 4)
    with set_backend("fused", "compiled"), pytest.raises(RuntimeError, match="cannot be built"):
        fused.step_ops(x)


def test_other_dtypes_and_setting_use_torch_ops() -> None:
    assert fused.step_ops(torch.zeros(1, dtype=torch.bfloat16)) is None
    with set_backend("fused", "torch"):
        assert fused.step_ops(torch.zeros(1)) is None
    with pytest.raises(ValueError, match="fused backend must be one of"):
        set_backend("fused", "numba")


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_sampler_equals_torch_step(bias: bool) -> None:
    """The compiled sampling step: the state, p = softmax(logits / temperature) and the inverse
    CDF draw equal those of embedding → torch.nn.LSTM → head stepped one token at a time."""
    from torch import nn

    from rnnkit.kernels.fused.sampler import LSTMSampler

    torch.manual_seed(0)
    V, E, H, L = 11, 5, 8, 2
    emb, lstm, head = nn.Embedding(V, E), nn.LSTM(E, H, L, bias=bias), nn.Linear(H, V, bias=bias)
    sampler = LSTMSampler(emb, lstm, head)
    state, temperature = None, 0.7
    for token, u in [(3, 0.1), (0, 0.5), (10, 0.99), (4, 0.0)]:
        nxt = sampler.step(token, u, temperature)
        with torch.no_grad():
            ys, state = lstm(emb(torch.tensor([[token]])), state)
            p = (head(ys[0, 0]) / temperature).softmax(-1)
        torch.testing.assert_close(sampler.probs, p, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sampler.h, state[0][:, 0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(sampler.c, state[1][:, 0], rtol=1e-5, atol=1e-6)
        assert nxt == min(int((p.cumsum(0) <= u).sum()), V - 1)
    out = sampler.sample([1, 2], 6, generator=torch.Generator().manual_seed(0))
    assert len(out) == 6 and all(0 <= t < V for t in out)
    with pytest.raises(ValueError, match="token must be in"):
        sampler.step(V, 0.5)


def forward(name: str, xs: torch.Tensor, backend: str) -> list[torch.Tensor]:
    torch.manual_seed(0)
    cell = CELLS[name](xs.shape[-1], 7, xs.dtype)
    state, _ = make_state(cell, xs.shape[1], xs.dtype)
    with torch.no_grad(), set_backend("fused", backend), set_backend("lstm", "rnnkit"):
        ys, final = Recurrent(cell, use_kernel=True)(xs, state)
    return [ys, *flat(final)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", CELLS)
def test_saturation_and_nan_behave_as_the_torch_ops(name: str, dtype: torch.dtype) -> None:
    # pre-activations of ±1e4 saturate (no NaN from inf arithmetic); a NaN in the input
    # reaches exactly the outputs it reaches through the PyTorch ops (never silently dropped)
    torch.manual_seed(1)
    xs = torch.randn(6, 5, 3, dtype=dtype) * 1e4
    xs[2, 0, 1] = float("nan")
    compiled, ops = forward(name, xs, "compiled"), forward(name, xs, "torch")
    for oc, oo in zip(compiled, ops, strict=True):
        assert torch.equal(oc.isnan(), oo.isnan())
        torch.testing.assert_close(oc, oo, equal_nan=True, **TOL[dtype])


def test_a_bad_rnnkit_fused_is_one_line_at_first_use_not_an_import_traceback(monkeypatch):
    import subprocess
    import sys

    from rnnkit.kernels import backends
    from user_errors import one_line_error

    env = {**os.environ, "RNNKIT_FUSED": "bogus"}
    done = subprocess.run([sys.executable, "-c", "import rnnkit.kernels.backends"], env=env)
    assert done.returncode == 0  # importing rnnkit never fails on it
    monkeypatch.setenv("RNNKIT_FUSED", "bogus")
    monkeypatch.setattr(backends, "_pending_env", {"fused": "RNNKIT_FUSED"})
    monkeypatch.setitem(backends._settings, "fused", "auto")
    one_line_error(lambda: backends.get_backend("fused"), "RNNKIT_FUSED", "'bogus'", "compiled")
    monkeypatch.setenv("RNNKIT_FUSED", "torch")
    assert backends.get_backend("fused") == "torch"
