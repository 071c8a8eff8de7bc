"""The GRU and minimal-GRU BPTT kernels against the generic path (autograd through the cell)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch_op_paths import assert_all_close, inference_paths

from rnnkit.cells import GRUCell, MinimalGRUCell
from rnnkit.kernels.gru import gru_sequence
from rnnkit.kernels.minimal_gru import minimal_gru_sequence
from rnnkit.layers.recurrent import Recurrent, length_mask

CELLS = {
    "gru-after": lambda I, H, dt: GRUCell(I, H, reset_after=True, dtype=dt),
    "gru-after-nobias": lambda I, H, dt: GRUCell(I, H, bias=False, reset_after=True, dtype=dt),
    "gru-before": lambda I, H, dt: GRUCell(I, H, reset_after=False, dtype=dt),
    "gru-before-nobias": lambda I, H, dt: GRUCell(I, H, bias=False, reset_after=False, dtype=dt),
    "mgru": lambda I, H, dt: MinimalGRUCell(I, H, dtype=dt),
    "mgru-nobias": lambda I, H, dt: MinimalGRUCell(I, H, bias=False, dtype=dt),
}
LENGTHS = {"full": None, "ragged": [7, 3, 7, 1, 0]}  # T = 7, B = 5, one empty sequence


def make(name: str, dtype: torch.dtype, T: int, B: int, I: int, H: int, seed: int = 0):
    torch.manual_seed(seed)
    cell = CELLS[name](I, H, dtype)
    xs = torch.randn(T, B, I, dtype=dtype, requires_grad=True)
    h0 = torch.randn(B, H, dtype=dtype, requires_grad=True)
    return cell, xs, h0


def run_with_grads(
    cell: nn.Module, use_kernel: bool, xs: Tensor, h0: Tensor, lengths, reverse: bool
) -> tuple[Tensor, Tensor, tuple[Tensor, ...]]:
    ys, hT = Recurrent(cell, use_kernel=use_kernel)(xs, h0, lengths=lengths, reverse=reverse)
    g = torch.Generator().manual_seed(1)
    wy = torch.randn(ys.shape, generator=g, dtype=ys.dtype)
    wh = torch.randn(hT.shape, generator=g, dtype=hT.dtype)
    loss = (ys * wy).sum() + (hT * wh).sum()
    grads = torch.autograd.grad(loss, [xs, h0, *cell.parameters()])
    return ys.detach(), hT.detach(), grads


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("lengths", LENGTHS.values(), ids=LENGTHS.keys())
@pytest.mark.parametrize("name", CELLS)
def test_kernel_equals_generic(name: str, lengths, reverse: bool) -> None:
    cell, xs, h0 = make(name, torch.float64, T=7, B=5, I=4, H=6)
    lengths = None if lengths is None else torch.tensor(lengths)
    ys_k, hT_k, grads_k = run_with_grads(cell, True, xs, h0, lengths, reverse)
    ys_g, hT_g, grads_g = run_with_grads(cell, False, xs, h0, lengths, reverse)
    torch.testing.assert_close(ys_k, ys_g)
    torch.testing.assert_close(hT_k, hT_g)
    assert len(grads_k) == len(grads_g)
    for gk, gg in zip(grads_k, grads_g, strict=True):
        torch.testing.assert_close(gk, gg)
    if lengths is not None:  # padding: zero outputs, and the final state is the last valid one
        assert ys_k[3:, 1].abs().max() == 0 and ys_k[:, 4].abs().max() == 0
        torch.testing.assert_close(hT_k[4], h0.detach()[4], rtol=0, atol=0)


@pytest.mark.parametrize("lengths", [None, [4, 2, 1]], ids=["full", "ragged"])
@pytest.mark.parametrize("name", CELLS)
def test_gradcheck(name: str, lengths) -> None:
    cell, xs, h0 = make(name, torch.float64, T=4, B=3, I=3, H=2)
    layer = Recurrent(cell, use_kernel=True)
    lengths = None if lengths is None else torch.tensor(lengths)
    names = [n for n, _ in cell.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in cell.parameters()]

    def f(xs: Tensor, h0: Tensor, *ps: Tensor) -> tuple[Tensor, Tensor]:
        return functional_call(
            layer,
            {f"cell.{n}": p for n, p in zip(names, ps, strict=True)},
            (xs, h0),
            {"lengths": lengths},
        )

    assert torch.autograd.gradcheck(f, (xs, h0, *params))


@pytest.mark.parametrize("name", CELLS)
def test_float32_close_to_generic(name: str) -> None:
    cell, xs, h0 = make(name, torch.float32, T=9, B=4, I=5, H=8, seed=2)
    lengths = torch.tensor([9, 5, 2, 9])
    ys_k, hT_k, grads_k = run_with_grads(cell, True, xs, h0, lengths, False)
    ys_g, hT_g, grads_g = run_with_grads(cell, False, xs, h0, lengths, False)
    tol = {"rtol": 1e-5, "atol": 1e-5}
    torch.testing.assert_close(ys_k, ys_g, **tol)
    torch.testing.assert_close(hT_k, hT_g, **tol)
    for gk, gg in zip(grads_k, grads_g, strict=True):
        torch.testing.assert_close(gk, gg, **tol)


@pytest.mark.parametrize("name", CELLS)
def test_kernel_is_the_path_taken(name: str) -> None:
    """Without reversal the outputs come straight from the kernel's autograd Function."""
    cell, xs, h0 = make(name, torch.float64, T=3, B=2, I=2, H=3)
    ys, hT = Recurrent(cell)(xs, h0)
    expected = "MinimalGRUBPTT" if name.startswith("mgru") else "GRUBPTT"
    assert type(ys.grad_fn).__name__ == expected + "Backward"


@pytest.mark.parametrize("name", CELLS)
def test_direct_call_needs_only_some_grads(name: str) -> None:
    """Only the initial state requires grad: its gradient matches the generic path's."""
    cell, xs, h0 = make(name, torch.float64, T=5, B=3, I=2, H=3)
    xs = xs.detach()
    cell.requires_grad_(False)
    mask = length_mask(torch.tensor([5, 2, 4]), 5)
    seq = minimal_gru_sequence if name.startswith("mgru") else gru_sequence
    xg = nn.functional.linear(xs, cell.weight_ih, cell.bias_ih)
    ys, hT = seq(cell, xg, h0, mask)
    (gk,) = torch.autograd.grad(ys.sum() + hT.square().sum(), h0)
    ys_g, hT_g = Recurrent(cell, use_kernel=False)(xs, h0, lengths=torch.tensor([5, 2, 4]))
    (gg,) = torch.autograd.grad(ys_g.sum() + hT_g.square().sum(), h0)
    torch.testing.assert_close(ys, ys_g)
    torch.testing.assert_close(gk, gg)


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_gru_inference_through_torchs_op_equals_kernel_and_torch_nn(bias, dtype):
    """With no gradient recorded, a GRU layer (reset after) without lengths runs torch's own GRU
    op (the "gru" switch at "auto"): the same outputs and final states as the hand-derived
    kernel (the switch at "rnnkit") and as torch.nn.GRU on the same weights."""
    import rnnkit
    from rnnkit.kernels import gru

    torch.manual_seed(0)
    ours = rnnkit.GRU(5, 7, num_layers=2, bias=bias, dtype=dtype)
    theirs = nn.GRU(5, 7, num_layers=2, bias=bias, dtype=dtype)
    theirs.load_state_dict(ours.state_dict())
    x, h0 = torch.randn(6, 3, 5, dtype=dtype), torch.randn(2, 3, 7, dtype=dtype)
    taken, *outputs = inference_paths(gru, "gru", ours, theirs, x, h0)
    assert taken == [True, True, False, False]  # two layers each way
    assert_all_close(dtype, *outputs)


def test_gru_takes_torchs_op_only_where_it_computes_the_same_function_and_is_faster():
    from rnnkit.kernels import onednn
    from rnnkit.kernels.gru import use_torch_op

    torch.manual_seed(0)
    xs, h = torch.randn(4, 2, 3), torch.zeros(2, 5)
    mask = torch.ones(4, 2, 1, dtype=torch.bool)
    with torch.no_grad():
        assert use_torch_op(GRUCell(3, 5), xs, h, None)
        assert not use_torch_op(GRUCell(3, 5), xs, h, mask)
        assert not use_torch_op(GRUCell(3, 5, reset_after=False), xs, h, None)
        assert not use_torch_op(GRUCell(3, 5), xs[:0], h, None)  # T = 0
    assert not use_torch_op(GRUCell(3, 5), xs, h, None)  # training: the weights need grads
    frozen = GRUCell(3, 5).requires_grad_(False)
    assert use_torch_op(frozen, xs, h, None)  # nothing records a gradient
    assert not use_torch_op(frozen, xs.requires_grad_(), h, None)
    # The hand kernel where oneDNN's packed weight saves repacking a large W_hh a step.
    big = GRUCell(4, 1024).requires_grad_(False)  # W_hh: 3 · 2^20 elements
    small = GRUCell(4, 512).requires_grad_(False)  # 3 · 2^18
    for cell, B, hand in ((big, 8, True), (big, 64, True), (big, 65, False), (big, 3, False)):
        xs, h = torch.randn(2, B, 4), torch.zeros(B, cell.hidden_size)
        with torch.no_grad():
            taken = use_torch_op(cell, xs, h, None)
        assert taken == (not (hand and onednn.applies(cell.weight_hh, B)))
    xs, h = torch.randn(2, 32, 4), torch.zeros(32, 512)
    with torch.no_grad():
        assert use_torch_op(small, xs, h, None)  # packed or not: W_hh below HAND_MIN_WEIGHT
