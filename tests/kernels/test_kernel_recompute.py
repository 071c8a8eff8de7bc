"""Checkpointing through time inside the kernels (``rnnkit.kernels.recompute``): gradcheck in
float64 for every kernel, equal values and gradients to the kernel storing everything, with
chunks that do not divide T and with masks; ``Stacked`` with ``checkpoint_steps`` equal to
without, for kernel cells and for a user's cell; and the stack of kernels recomputed across
its layers (``recompute_stack``): equal to storing everything with residual links, dropout and
lengths, gradcheck, only the stack's input and the boundary states saved, second derivatives."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import rnnkit.kernels.chunks as chunks
import rnnkit.kernels.recompute as recompute
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.jordan import JordanCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.minimal_gru import MinimalGRUCell
from rnnkit.kernels import find_kernel
from rnnkit.kernels.backends import set_backend
from rnnkit.layers.recurrent import Recurrent, length_mask
from rnnkit.layers.stacked import Stacked

D = torch.float64
CELLS = {
    "elman": lambda H: ElmanCell(2, H),
    "elman-relu": lambda H: ElmanCell(2, H, nonlinearity="relu"),
    "jordan-softmax": lambda H: JordanCell(2, H, output_size=2, output_nonlinearity="softmax"),
    "lstm": lambda H: LSTMCell(2, H),
    "lstm-peephole-layernorm": lambda H: LSTMCell(2, H, peephole=True, layer_norm=True),
    "gru": lambda H: GRUCell(2, H),
    "gru-reset-before": lambda H: GRUCell(2, H, reset_after=False),
    "minimal-gru": lambda H: MinimalGRUCell(2, H),
}
T, B = 7, 3
LENGTHS = torch.tensor([7, 4, 0])


def make(name: str, hidden: int = 3) -> nn.Module:
    torch.manual_seed(0)
    cell = CELLS[name](hidden).to(D)
    with torch.no_grad():  # move peepholes and layer-norm gains off their initial values
        for p in cell.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return cell


def inputs(cell: nn.Module, steps: int = T, batch: int = B):
    xs = torch.randn(steps, batch, 2, dtype=D, requires_grad=True)
    leaves = tuple(torch.randn(batch, n, dtype=D, requires_grad=True) for n in cell.state_sizes)
    return xs, leaves


def as_state(leaves):
    return leaves if len(leaves) > 1 else leaves[0]


def flat(ys, state):
    return [ys, *(state if isinstance(state, tuple) else (state,))]


def test_every_kernel_has_a_chunk_kernel():
    assert set(chunks.CHUNK_KERNELS) == {
        ElmanCell,
        JordanCell,
        LSTMCell,
        GRUCell,
        MinimalGRUCell,
    }
    assert all(find_kernel(c(3)) for c in CELLS.values())


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("with_mask", [False, True])
def test_gradcheck(name, with_mask):
    cell = make(name, hidden=2)  # tiny: gradcheck perturbs every number
    xs, leaves = inputs(cell, steps=5, batch=2)
    mask = length_mask(torch.tensor([5, 2]), 5) if with_mask else None
    params = tuple(cell.parameters())

    def f(xs, *tensors):  # the parameters are perturbed in place: the cell's own
        state = as_state(tensors[: len(leaves)])
        return tuple(flat(*recompute.recompute_sequence(cell, xs, state, mask, 2)))

    assert torch.autograd.gradcheck(f, (xs, *leaves, *params))


@pytest.mark.parametrize("name", CELLS)
@pytest.mark.parametrize("k", [1, 3, 6])
@pytest.mark.parametrize("with_mask", [False, True])
def test_equal_to_storing_everything(name, k, with_mask):
    cell = make(name)
    xs, leaves = inputs(cell)
    mask = length_mask(LENGTHS, T) if with_mask else None
    wrt = [xs, *leaves, *cell.parameters()]
    weights = None
    results = []
    for run in (
        lambda: find_kernel(cell)(cell, xs, as_state(leaves), mask),
        lambda: recompute.recompute_sequence(cell, xs, as_state(leaves), mask, k),
    ):
        outs = flat(*run())
        if weights is None:
            weights = [torch.randn_like(o) for o in outs]
        loss = sum((o * w).sum() for o, w in zip(outs, weights, strict=True))
        results.append([*outs, *torch.autograd.grad(loss, wrt)])
    for a, b in zip(*results, strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_fused_lstm_chunks_equal_the_hand_kernel():
    """The plain LSTM without a mask recomputes through torch's fused op when the "lstm" backend
    says so; the same function as the hand-derived kernel's chunks."""
    cell = make("lstm")
    xs, leaves = inputs(cell)
    wrt = [xs, *leaves, *cell.parameters()]
    results = []
    for backend in ("torch", "rnnkit"):
        with set_backend("lstm", backend):
            assert isinstance(
                chunks.chunks_for(cell, xs, None),
                chunks._FusedLSTMChunks if backend == "torch" else chunks._HandChunks,
            )
            ys, (h, c) = recompute.recompute_sequence(cell, xs, leaves, None, 3)
            loss = (ys * ys.detach().cos()).sum() + h.sum() + (c * 2).sum()
            results.append([ys, h, c, *torch.autograd.grad(loss, wrt)])
    for a, b in zip(*results, strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


REBUILT = {"elman": "elman", "elman-relu": "elman", "lstm": "lstm", "gru": "gru",
           "gru-reset-before": "gru", "minimal-gru": "minimal_gru"}  # fmt: skip


@pytest.mark.parametrize(
    ("name", "backend"), [*((n, "rnnkit") for n in REBUILT), ("lstm", "torch")]
)  # the "lstm" backend's "torch": the fused op's chunks, replayed rather than rebuilt
def test_the_top_layer_is_rebuilt_from_its_outputs(name, backend, monkeypatch):
    """The top layer's chunks come from the kept outputs (one product over each chunk), not
    from its recursion, and give the replay's values and gradients; not with a length mask or
    a residual term after the top layer."""
    calls = []
    original = chunks.REBUILDS[REBUILT[name]]
    monkeypatch.setitem(chunks.REBUILDS, REBUILT[name], lambda *a: calls.append(1) or original(*a))
    bottom, top = make("gru", hidden=2), make(name, hidden=2)  # widths 2: a residual can apply
    xs, _ = inputs(bottom)
    states = [torch.randn(B, 2, dtype=D, requires_grad=True)]
    states.append(tuple(torch.randn(B, n, dtype=D, requires_grad=True) for n in top.state_sizes))
    wrt = [xs, states[0], *states[1], *bottom.parameters(), *top.parameters()]
    for mask, residual, rebuilds in ((None, False, 3), (length_mask(LENGTHS, T), False, 0),
                                     (None, True, 0)):  # fmt: skip
        results = []
        for rebuild in (True, False):
            calls.clear()
            with set_backend("lstm", backend), set_backend("rebuild", "auto" if rebuild else "off"):
                cells, s = [bottom, top], [states[0], as_state(states[1])]
                ys, finals = recompute.recompute_stack(cells, xs, s, mask, 3, residual)
            outs = [ys, finals[0], *flat(ys, finals[1])[1:]]
            loss = sum((o * o.detach().sin()).sum() for o in outs)
            results.append([*outs, *torch.autograd.grad(loss, wrt)])
            assert len(calls) == (rebuilds if rebuild and backend == "rnnkit" else 0)
        for a, b in zip(*results, strict=True):
            assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_only_inputs_and_boundary_states_are_saved():
    """And the returned outputs (which the caller holds) when the top layer is rebuilt from them."""
    cell = LSTMCell(4, 8)
    xs = torch.randn(40, 2, 4, requires_grad=True)
    params = [tuple(p.shape) for p in cell.parameters()]
    expected = [(40, 2, 4), (2, 8), (2, 8), *params, (4, 2, 8), (4, 2, 8)]
    for mask in (None, torch.ones(40, 2, 1, dtype=torch.bool)):
        saved: list[torch.Tensor] = []
        hooks = (lambda t, saved=saved: saved.append(t) or t, lambda t: t)
        with torch.autograd.graph.saved_tensors_hooks(*hooks):
            with set_backend("lstm", "rnnkit"):
                ys, _ = recompute.recompute_sequence(cell, xs, cell.init_state(2), mask, 10)
        if mask is None:  # the outputs themselves, not a copy
            assert saved[-1].data_ptr() == ys.data_ptr()
            saved = saved[:-1]
        assert [tuple(s.shape) for s in saved] == expected


def test_second_derivatives_through_the_origin():
    cell = make("gru")
    xs, (h0,) = inputs(cell)
    mask = length_mask(LENGTHS, T)
    penalties = []
    for run in (
        lambda: find_kernel(cell)(cell, xs, h0, mask),
        lambda: recompute.recompute_sequence(cell, xs, h0, mask, 2),
    ):
        ys, h = run()
        (gx,) = torch.autograd.grad((ys * ys).sum() + h.sum(), xs, create_graph=True)
        penalty = (gx * gx).sum()
        penalties.append(torch.autograd.grad(penalty, [xs, h0, *cell.parameters()]))
    for a, b in zip(*penalties, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-12)


class ScaledTanhCell(nn.Module):
    """A user's cell, without a kernel: h' = tanh(W x + U h) ⊙ s."""

    state_sizes = (3,)
    output_size = 3

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 3)
        self.rec = nn.Linear(3, 3, bias=False)
        self.scale = nn.Parameter(torch.rand(3) + 0.5)

    def init_state(self, batch: int, *, device=None, dtype=None):
        return torch.zeros(batch, 3, device=device, dtype=dtype)

    def forward(self, x, h):
        h = torch.tanh(self.lin(x) + self.rec(h)) * self.scale
        return h, h


@pytest.mark.parametrize("user", [False, True])
@pytest.mark.parametrize("with_lengths", [False, True])
def test_stacked_checkpointed_equals_storing_everything(user, with_lengths):
    torch.manual_seed(0)

    def stack(k):
        torch.manual_seed(1)
        first = ScaledTanhCell() if user else LSTMCell(2, 3)
        layers = [Recurrent(first), Recurrent(GRUCell(3, 3)), Recurrent(ElmanCell(3, 3))]
        return Stacked(layers, dropout=0.3, residual=True, checkpoint_steps=k).to(D).train()

    plain, chunked = stack(0), stack(3)
    xs = torch.randn(T, B, 2, dtype=D, requires_grad=True)
    lengths = LENGTHS if with_lengths else None
    results = []
    for model in (plain, chunked):
        torch.manual_seed(5)  # the same dropout masks: layers run in the same order
        ys, states = model(xs, lengths=lengths)
        leaves = [t for s in states for t in (s if isinstance(s, tuple) else (s,))]
        loss = (ys * ys.detach().sin()).sum() + sum((t * 0.7).sum() for t in leaves)
        results.append([ys, *leaves, *torch.autograd.grad(loss, [xs, *model.parameters()])])
    for a, b in zip(*results, strict=True):
        assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_recurrent_checks_checkpoint_steps():
    layer = Recurrent(GRUCell(2, 3))
    with pytest.raises(ValueError, match="checkpoint_steps must be >= 0"):
        layer(torch.randn(4, 1, 2), checkpoint_steps=-1)
    with pytest.raises(ValueError, match="checkpoint_steps must be an integer"):
        layer(torch.randn(4, 1, 2), checkpoint_steps=2.0)


def kernel_stack(k: int, p: float = 0.3, in_kernels: bool = True) -> Stacked:
    torch.manual_seed(1)
    layers = [
        Recurrent(LSTMCell(2, 3, peephole=True)),
        Recurrent(GRUCell(3, 3)),
        Recurrent(JordanCell(3, 3)),
        Recurrent(ElmanCell(3, 3)),
    ]
    stack = Stacked(layers, dropout=p, residual=True, checkpoint_steps=k).to(D).train()
    stack.recompute_in_kernels = in_kernels
    return stack


@pytest.mark.parametrize("p", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("in_kernels", [True, False])
def test_kernel_stack_equals_storing_everything(p, k, in_kernels):
    """Across the stack: residual links, dropout masks (drawn as k = 0 draws them), lengths;
    inside the kernels and, for comparison, under torch.utils.checkpoint."""
    xs = torch.randn(T, B, 2, dtype=D, requires_grad=True)
    h0 = torch.randn(B, 3, dtype=D, requires_grad=True)
    results = []
    for model in (kernel_stack(0, p), kernel_stack(k, p, in_kernels)):
        torch.manual_seed(5)
        ys, states = model(xs, [None, h0, None, None], lengths=LENGTHS)
        leaves = [t for s in states for t in (s if isinstance(s, tuple) else (s,))]
        loss = (ys * ys.detach().sin()).sum() + sum((t * 0.7).sum() for t in leaves)
        wrt = [xs, h0, *model.parameters()]
        results.append([ys, *leaves, *torch.autograd.grad(loss, wrt)])
    for a, b in zip(*results, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_kernel_stack_gradcheck():
    """Two layers, a residual link and dropout between them, lengths; gradcheck's fast mode
    (random directions; every kernel's full gradcheck is above)."""
    torch.manual_seed(1)
    cells = [LSTMCell(2, 2, peephole=True).to(D), GRUCell(2, 2).to(D)]
    xs = torch.randn(5, 2, 2, dtype=D, requires_grad=True)
    keeps = [recompute.keep_mask((5, 2, 2), 0.5, xs), None]  # fixed: f is deterministic
    states = [c.init_state(2, dtype=D) for c in cells]
    mask = length_mask(torch.tensor([5, 3]), 5)
    params = [p for c in cells for p in c.parameters()]

    def f(xs, *params):  # the parameters are perturbed in place: the cells' own
        ys, finals = recompute.recompute_stack(cells, xs, states, mask, 2, True, 0.5, keeps)
        return ys, *finals[0], finals[1]

    assert torch.autograd.gradcheck(f, (xs, *params), fast_mode=True)


def test_kernel_stack_saves_only_its_input_and_boundary_states():
    """No layer's input nor an intermediate layer's output is saved: the stack's input, the
    parameters, the states at the chunks' starts (4 chunks of 10 steps) and the top layer's
    outputs (returned: the caller holds them) are all that backward keeps."""
    layers = [Recurrent(LSTMCell(4, 8)), Recurrent(GRUCell(8, 8)), Recurrent(ElmanCell(8, 8))]
    model = Stacked(layers, checkpoint_steps=10)
    xs = torch.randn(40, 2, 4, requires_grad=True)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.append(tuple(t.shape)) or t, lambda t: t
    ):
        with set_backend("lstm", "rnnkit"):
            model(xs)
    params = [tuple(p.shape) for p in model.parameters()]
    states = [(2, 8)] * 4  # (h, c), h, h
    expected = [(40, 2, 4), *states, *params, *[(4, 2, 8)] * 4, (40, 2, 8)]
    assert sorted(saved) == sorted(expected)


def test_kernel_stack_second_derivatives():
    xs = torch.randn(T, B, 2, dtype=D, requires_grad=True)
    penalties = []
    for model in (kernel_stack(0), kernel_stack(3)):
        torch.manual_seed(5)
        ys, _ = model(xs, lengths=LENGTHS)
        (gx,) = torch.autograd.grad((ys * ys).sum(), xs, create_graph=True)
        penalties.append(torch.autograd.grad((gx * gx).sum(), [xs, *model.parameters()]))
    for a, b in zip(*penalties, strict=True):
        assert_close(a, b, rtol=1e-10, atol=1e-12)
