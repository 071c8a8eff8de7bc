"""The hand-derived Elman and Jordan BPTT kernels against autograd through the generic path."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch_op_paths import assert_all_close, inference_paths

from rnnkit.cells import ElmanCell, JordanCell
from rnnkit.kernels import find_kernel, generic
from rnnkit.layers.recurrent import Recurrent

ELMAN_NONLINEARITIES = ["tanh", "relu", "sigmoid", "identity"]
# Jordan: every output nonlinearity g, and every hidden f, without the full product.
JORDAN_PAIRS = [
    ("tanh", "identity"),
    ("relu", "tanh"),
    ("sigmoid", "sigmoid"),
    ("identity", "softmax"),
    ("relu", "softmax"),
]


def make_cell(kind: str, nonlinearity: str, output: str, bias: bool, sizes: tuple, dtype):
    I, H, O = sizes
    if kind == "elman":
        return ElmanCell(I, H, bias=bias, nonlinearity=nonlinearity, dtype=dtype)
    return JordanCell(
        I,
        H,
        bias=bias,
        output_size=O,
        nonlinearity=nonlinearity,
        output_nonlinearity=output,
        dtype=dtype,
    )


VARIANTS = [
    pytest.param("elman", f, "identity", bias, id=f"elman-{f}-bias{int(bias)}")
    for f, bias in itertools.product(ELMAN_NONLINEARITIES, [True, False])
] + [
    pytest.param("jordan", f, g, bias, id=f"jordan-{f}-{g}-bias{int(bias)}")
    for (f, g), bias in itertools.product(JORDAN_PAIRS, [True, False])
]


def run_both(
    cell: nn.Module, xs: Tensor, h0: Tensor, lengths: Tensor | None, reverse: bool
) -> list[tuple[Tensor, ...]]:
    """Outputs, final state and gradients w.r.t. (xs, h0, *parameters), kernel then generic."""
    T, B = xs.shape[:2]
    g = torch.Generator().manual_seed(1)
    w_ys = torch.randn(T, B, cell.output_size, generator=g, dtype=xs.dtype)
    w_hT = torch.randn(B, cell.output_size, generator=g, dtype=xs.dtype)
    inputs = [xs, h0, *cell.parameters()]
    results = []
    for use_kernel in (True, False):
        ys, hT = Recurrent(cell, use_kernel=use_kernel)(xs, h0, lengths=lengths, reverse=reverse)
        loss = (ys * w_ys).sum() + (hT * w_hT).sum()
        results.append((ys, hT, *torch.autograd.grad(loss, inputs)))
    return results


@pytest.mark.parametrize("kind, f, g, bias", VARIANTS)
@pytest.mark.parametrize("lengths", [None, [6, 2, 0, 5]], ids=["full", "lengths"])
@pytest.mark.parametrize("reverse", [False, True], ids=["fwd", "rev"])
def test_kernel_equals_generic(kind, f, g, bias, lengths, reverse):
    torch.manual_seed(0)
    T, B, sizes = 6, 4, (3, 5, 4)
    cell = make_cell(kind, f, g, bias, sizes, torch.float64)
    xs = torch.randn(T, B, sizes[0], dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, cell.output_size, dtype=torch.float64, requires_grad=True)
    lengths = None if lengths is None else torch.tensor(lengths)
    kernel, generic = run_both(cell, xs, h0, lengths, reverse)
    for a, b in zip(kernel, generic, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind, f, g, bias", VARIANTS)
@pytest.mark.parametrize("lengths", [None, [4, 1, 3]], ids=["full", "lengths"])
def test_gradcheck(kind, f, g, bias, lengths):
    torch.manual_seed(0)  # a seed whose relu pre-activations stay clear of the kink at 0
    T, B, sizes = 4, 3, (3, 2, 3)
    cell = make_cell(kind, f, g, bias, sizes, torch.float64)
    layer = Recurrent(cell, use_kernel=True)
    names = [f"cell.{n}" for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    xs = torch.randn(T, B, sizes[0], dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, cell.output_size, dtype=torch.float64, requires_grad=True)
    lengths = None if lengths is None else torch.tensor(lengths)

    def fn(xs: Tensor, h0: Tensor, *ps: Tensor) -> tuple[Tensor, Tensor]:
        return functional_call(
            layer, dict(zip(names, ps, strict=True)), (xs, h0), {"lengths": lengths}
        )

    assert torch.autograd.gradcheck(fn, (xs, h0, *params))


@pytest.mark.parametrize(
    "kind, f, g",
    [
        ("elman", "tanh", "identity"),
        ("elman", "relu", "identity"),
        ("jordan", "tanh", "softmax"),
        ("jordan", "sigmoid", "tanh"),
    ],
)
def test_float32_close_to_generic(kind, f, g):
    torch.manual_seed(0)
    T, B, sizes = 20, 8, (6, 16, 10)
    cell = make_cell(kind, f, g, True, sizes, torch.float32)
    xs = torch.randn(T, B, sizes[0], requires_grad=True)
    h0 = torch.randn(B, cell.output_size, requires_grad=True)
    lengths = torch.tensor([20, 13, 1, 7, 20, 0, 19, 5])
    kernel, generic = run_both(cell, xs, h0, lengths, False)
    for a, b in zip(kernel, generic, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "kind, f, g", [("elman", "tanh", "identity"), ("jordan", "relu", "softmax")]
)
def test_any_mask_equals_generic(kind, f, g):
    """Not only length masks: a sequence may pause and resume, the state carried meanwhile."""
    torch.manual_seed(0)
    T, B, sizes = 7, 5, (3, 4, 3)
    cell = make_cell(kind, f, g, True, sizes, torch.float64)
    xs = torch.randn(T, B, sizes[0], dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, cell.output_size, dtype=torch.float64, requires_grad=True)
    mask = torch.rand(T, B, 1) > 0.4
    inputs = [xs, h0, *cell.parameters()]
    results = []
    for run in (find_kernel(cell), generic):
        ys, hT = run(cell, xs, h0, mask)
        loss = (ys * torch.linspace(-1, 1, ys.numel()).view_as(ys)).sum() + hT.square().sum()
        results.append((ys, hT, *torch.autograd.grad(loss, inputs)))
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("kind", ["elman", "jordan"])
def test_no_grad_and_partial_grads(kind):
    """No graph under no_grad; with frozen parameters only the input gets a gradient."""
    torch.manual_seed(0)
    cell = make_cell(kind, "tanh", "sigmoid", True, (3, 4, 2), torch.float64)
    xs = torch.randn(5, 2, 3, dtype=torch.float64)
    with torch.no_grad():
        ys, hT = Recurrent(cell)(xs)
    assert not ys.requires_grad and not hT.requires_grad
    torch.testing.assert_close(ys, Recurrent(cell, use_kernel=False)(xs)[0].detach())

    cell.requires_grad_(False)
    xs.requires_grad_()
    ys, hT = Recurrent(cell)(xs)
    (grad,) = torch.autograd.grad(ys.sum() + hT.sum(), xs)
    ys, hT = Recurrent(cell, use_kernel=False)(xs)
    (expected,) = torch.autograd.grad(ys.sum() + hT.sum(), xs)
    torch.testing.assert_close(grad, expected)


@pytest.mark.parametrize("nonlinearity", ["tanh", "relu"])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_elman_inference_through_torchs_op_equals_kernel_and_torch_nn(nonlinearity, bias, dtype):
    """With no gradient recorded, a tanh or ReLU Elman layer without lengths runs torch's own RNN
    op (the "elman" switch at "auto"): the same outputs and final states as the hand-derived
    kernel (the switch at "rnnkit") and as torch.nn.RNN on the same weights."""
    import rnnkit
    from rnnkit.kernels import elman

    torch.manual_seed(0)
    ours = rnnkit.RNN(5, 7, num_layers=2, nonlinearity=nonlinearity, bias=bias, dtype=dtype)
    theirs = nn.RNN(5, 7, num_layers=2, nonlinearity=nonlinearity, bias=bias, dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    x, h0 = torch.randn(6, 3, 5, dtype=dtype), torch.randn(2, 3, 7, dtype=dtype)
    taken, *outputs = inference_paths(elman, "elman", ours, theirs, x, h0)
    assert taken == [True, True, False, False]  # two layers each way
    assert_all_close(dtype, *outputs)


def test_elman_takes_torchs_op_only_where_it_computes_the_same_function():
    from rnnkit.kernels.elman import use_torch_op

    torch.manual_seed(0)
    xs, h = torch.randn(4, 2, 3), torch.zeros(2, 5)
    mask = torch.ones(4, 2, 1, dtype=torch.bool)
    with torch.no_grad():
        assert use_torch_op(ElmanCell(3, 5, nonlinearity="tanh"), xs, h, None)
        assert not use_torch_op(ElmanCell(3, 5, nonlinearity="tanh"), xs, h, mask)
        assert not use_torch_op(ElmanCell(3, 5, nonlinearity="sigmoid"), xs, h, None)
        assert not use_torch_op(ElmanCell(3, 5, nonlinearity="identity"), xs, h, None)
        assert not use_torch_op(ElmanCell(3, 5), xs[:0], h, None)  # T = 0
    assert not use_torch_op(ElmanCell(3, 5), xs, h, None)  # training: the weights need grads
    frozen = ElmanCell(3, 5).requires_grad_(False)
    assert use_torch_op(frozen, xs, h, None)  # nothing records a gradient
    assert not use_torch_op(frozen, xs.requires_grad_(), h, None)
