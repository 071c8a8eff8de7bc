"""The hand-derived LSTM kernel against the generic path (autograd through the cell's forward)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor
from torch.func import functional_call

from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels.lstm import lstm_sequence
from rnnkit.layers.recurrent import Recurrent

OPTIONS = {
    "plain": {},
    "no_bias": {"bias": False},
    "peephole": {"peephole": True},
    "layer_norm": {"layer_norm": True},
    "peephole_layer_norm": {"peephole": True, "layer_norm": True},
    "layer_norm_no_bias": {"layer_norm": True, "bias": False},
    "forget_bias": {"forget_bias": 1.0},
}
LENGTHS = {"full": None, "shorter": [7, 3, 7, 5], "with_zero": [7, 0, 2, 6]}


def make_cell(opts: dict, I: int, H: int, dtype: torch.dtype, seed: int = 0) -> LSTMCell:
    torch.manual_seed(seed)
    cell = LSTMCell(I, H, dtype=dtype, **opts)
    if cell.layer_norm:  # move the gains and β_c off their initial 1 and 0
        with torch.no_grad():
            for name in ("weight_ln_ih", "weight_ln_hh", "weight_ln_c", "bias_ln_c"):
                getattr(cell, name).add_(0.3 * torch.randn_like(getattr(cell, name)))
    return cell


def run_and_grad(
    cell: LSTMCell,
    use_kernel: bool,
    xs: Tensor,
    state: tuple[Tensor, Tensor],
    lengths,
    reverse: bool,
    weights: tuple[Tensor, Tensor, Tensor],
):
    """Outputs, final state and the gradients w.r.t. xs, h0, c0 and every parameter."""
    xs = xs.detach().requires_grad_()
    h0, c0 = (s.detach().requires_grad_() for s in state)
    ys, (h, c) = Recurrent(cell, use_kernel=use_kernel)(
        xs, (h0, c0), lengths=lengths, reverse=reverse
    )
    w_y, w_h, w_c = weights
    loss = (ys * w_y).sum() + (h * w_h).sum() + (c * w_c).sum()
    params = dict(cell.named_parameters())
    grads = torch.autograd.grad(loss, [xs, h0, c0, *params.values()])
    names = ["xs", "h0", "c0", *params]
    return ys.detach(), h.detach(), c.detach(), dict(zip(names, grads, strict=True))


def compare(
    opts: dict, lengths, reverse: bool, dtype: torch.dtype, grad_scaled: bool = False, **tol
) -> None:
    """Kernel vs generic; ``grad_scaled``: gradients' atol relative to each one's magnitude."""
    T, B, I, H = 7, 4, 5, 6
    cell = make_cell(opts, I, H, dtype)
    torch.manual_seed(1)
    xs = torch.randn(T, B, I, dtype=dtype)
    state = (torch.randn(B, H, dtype=dtype), torch.randn(B, H, dtype=dtype))
    weights = (
        torch.randn(T, B, H, dtype=dtype),
        torch.randn(B, H, dtype=dtype),
        torch.randn(B, H, dtype=dtype),
    )
    lengths = None if lengths is None else torch.tensor(lengths)
    k = run_and_grad(cell, True, xs, state, lengths, reverse, weights)
    g = run_and_grad(cell, False, xs, state, lengths, reverse, weights)
    for name, a, b in zip(("ys", "h_T", "c_T"), k[:3], g[:3], strict=True):
        torch.testing.assert_close(a, b, msg=lambda m, n=name: f"{n}: {m}", **tol)
    assert k[3].keys() == g[3].keys()
    for name in k[3]:
        kw = dict(tol)
        if grad_scaled:  # sums over T·B rows in another order: error grows with the magnitude
            kw["atol"] = tol["atol"] * max(1.0, g[3][name].abs().max().item())
        torch.testing.assert_close(k[3][name], g[3][name], msg=lambda m, n=name: f"{n}: {m}", **kw)


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
@pytest.mark.parametrize("opts", OPTIONS.values(), ids=OPTIONS.keys())
def test_kernel_equals_generic_float64(opts, lengths, reverse):
    compare(opts, lengths, reverse, torch.float64)


@pytest.mark.parametrize("lengths", [None, [7, 3, 7, 0]], ids=["full", "lengths"])
@pytest.mark.parametrize("opts", OPTIONS.values(), ids=OPTIONS.keys())
def test_kernel_equals_generic_float32(opts, lengths):
    compare(opts, lengths, False, torch.float32, grad_scaled=True, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("lengths", [None, [4, 2, 1]], ids=["full", "lengths"])
@pytest.mark.parametrize("opts", OPTIONS.values(), ids=OPTIONS.keys())
def test_gradcheck(opts, lengths):
    T, B, I, H = 4, 3, 3, 2
    cell = make_cell(opts, I, H, torch.float64)
    layer = Recurrent(cell, use_kernel=True)
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    torch.manual_seed(2)
    xs = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    lengths = None if lengths is None else torch.tensor(lengths)

    def fn(xs, h0, c0, *ps):
        p = {f"cell.{n}": v for n, v in zip(names, ps, strict=True)}
        ys, (h, c) = functional_call(layer, p, (xs, (h0, c0)), {"lengths": lengths})
        return ys, h, c

    assert torch.autograd.gradcheck(fn, (xs, h0, c0, *params))


def test_gradcheck_reverse_peephole_layer_norm():
    T, B, I, H = 4, 3, 3, 2
    cell = make_cell({"peephole": True, "layer_norm": True}, I, H, torch.float64)
    layer = Recurrent(cell, use_kernel=True)
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]
    torch.manual_seed(3)
    xs = torch.randn(T, B, I, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 4, 0])

    def fn(xs, h0, c0, *ps):
        p = {f"cell.{n}": v for n, v in zip(names, ps, strict=True)}
        kw = {"lengths": lengths, "reverse": True}
        ys, (h, c) = functional_call(layer, p, (xs, (h0, c0)), kw)
        return ys, h, c

    assert torch.autograd.gradcheck(fn, (xs, h0, c0, *params))


def test_direct_call_grads_only_where_needed():
    """lstm_sequence on xg directly; a frozen weight and a state without grad get none."""
    T, B, H = 3, 2, 4
    cell = make_cell({"peephole": True}, 3, H, torch.float64)
    cell.weight_hh.requires_grad_(False)
    xg = torch.randn(T, B, 4 * H, dtype=torch.float64, requires_grad=True)
    h0 = torch.randn(B, H, dtype=torch.float64)
    c0 = torch.randn(B, H, dtype=torch.float64, requires_grad=True)
    ys, (h, c) = lstm_sequence(cell, xg, (h0, c0), None)
    (ys.sum() + h.sum() + c.sum()).backward()
    assert xg.grad is not None and c0.grad is not None
    assert cell.weight_hh.grad is None and cell.weight_ci.grad is not None
    assert cell.bias_ih.grad is None  # not an input of the kernel: xg carries it


def test_no_grad_and_single_step_batch_one():
    cell = make_cell({"layer_norm": True, "peephole": True}, 3, 5, torch.float64)
    xs = torch.randn(1, 1, 3, dtype=torch.float64)
    with torch.no_grad():
        yk, (hk, ck) = Recurrent(cell, use_kernel=True)(xs)
        yg, (hg, cg) = Recurrent(cell, use_kernel=False)(xs)
    assert not yk.requires_grad
    torch.testing.assert_close((yk, hk, ck), (yg, hg, cg))


def test_outputs_do_not_alias_saved_state():
    """In-place changes to the outputs must not corrupt what backward uses."""
    cell = make_cell({}, 3, 4, torch.float64)
    xs = torch.randn(5, 2, 3, dtype=torch.float64, requires_grad=True)
    ys, (h, c) = Recurrent(cell, use_kernel=True)(xs)
    (gx,) = torch.autograd.grad((ys * 1.0).sum() + h.sum() + c.sum(), xs, retain_graph=True)
    ys2, (h2, c2) = Recurrent(cell, use_kernel=True)(xs)
    loss = ys2.sum() + h2.sum() + c2.sum()
    with torch.no_grad():
        ys2.zero_()
        h2.zero_()
    (gx2,) = torch.autograd.grad(loss, xs)
    torch.testing.assert_close(gx, gx2)


def test_empty_sequence_returns_initial_state():
    cell = make_cell({"peephole": True}, 3, 4, torch.float64)
    xs = torch.randn(0, 2, 3, dtype=torch.float64)
    h0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    c0 = torch.randn(2, 4, dtype=torch.float64, requires_grad=True)
    ys, (h, c) = Recurrent(cell, use_kernel=True)(xs, (h0, c0))
    assert ys.shape == (0, 2, 4)
    torch.testing.assert_close((h, c), (h0, c0))
    (h.sum() + 2 * c.sum()).backward()
    torch.testing.assert_close(c0.grad, torch.full_like(c0, 2.0))


def test_kernel_functions_named_one_way():
    """Each kernel's autograd Function is <Cell>BPTT; the former names are aliases."""
    from rnnkit import kernels
    from rnnkit.kernels.backends import set_backend
    from rnnkit.kernels.gru import GRUSequence
    from rnnkit.kernels.lstm import LSTMFunction
    from rnnkit.kernels.minimal_gru import MinimalGRUSequence

    assert LSTMFunction is kernels.LSTMBPTT and GRUSequence is kernels.GRUBPTT
    assert MinimalGRUSequence is kernels.MinimalGRUBPTT
    with set_backend("lstm", "rnnkit"):
        ys, _ = Recurrent(LSTMCell(2, 3))(torch.randn(4, 2, 2))
    assert type(ys.grad_fn).__name__ == "LSTMBPTTBackward"
