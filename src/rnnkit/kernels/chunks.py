r"""One kernel over one chunk of steps, for checkpointing through time (``kernels.recompute``).

A chunk runner does three things for a cell over a chunk x (k, B, I) from a state s_a:

- ``forward(cell, x, s_a, mask) -> (ys, s_b)``: the kernel's forward without a graph, keeping
  nothing (the first pass of checkpointing);
- ``replay(cell, x, s_a, mask, need_x, needed) -> (ys, s_b, handle)``: the same forward again,
  now keeping the chunk's activations in ``handle`` (the recomputation in backward);
- ``backward(handle, ∂L/∂ys, ∂L/∂s_b) -> (∂L/∂x, ∂L/∂s_a, grads)``: the kernel's own backward
  over the chunk, grads the chunk's parameter gradients by position in ``cell.parameters()``.

A hand-derived kernel's runner can also ``rebuild(cell, x, s_a, hs, need_x, needed) -> handle``
a chunk whose states hs (k, B, H) are known (the top layer of a stack, whose outputs are its
states): its activations without the recursion (``rnnkit.kernels.rebuild``), for the same
``backward``; ``can_rebuild`` says which can.

``_HandChunks`` calls a hand-derived kernel's ``torch.autograd.Function`` through its
``forward`` and ``backward`` with a context of this module's (``_ChunkContext``); the kernel
files are unchanged, and ``CHUNK_KERNELS`` says how to lay out each kernel's inputs. The input
projection xg = W_ih x + b_ih (the LSTM's ``input_gates``, with its input norm) is recomputed in
``replay`` under autograd, one matrix product over the chunk, and ∂L/∂x, ∂L/∂W_ih, ∂L/∂b_ih come
from ∂L/∂xg through its backward. ``_FusedLSTMChunks`` runs the plain LSTM without a mask
through torch's fused op where the "lstm" backend says so (``rnnkit.kernels.lstm.use_fused``):
``replay`` re-runs the chunk under autograd, ``backward`` is the op's own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.jordan import JordanCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.minimal_gru import MinimalGRUCell
from rnnkit.kernels.elman import ElmanBPTT
from rnnkit.kernels.gru import GRUBPTT
from rnnkit.kernels.jordan import JordanBPTT
from rnnkit.kernels.lstm import LSTMBPTT, lstm_sequence_fused, use_fused
from rnnkit.kernels.minimal_gru import MinimalGRUBPTT
from rnnkit.kernels.rebuild import REBUILDS

Leaves = tuple[Tensor, ...]
"""A state as its tensors: (h,) or (h, c)."""

Grads = dict[int, Tensor]
"""Parameter gradients by the parameter's position in ``cell.parameters()``."""


class _ChunkContext:
    """Autograd's ``ctx`` for a kernel Function's ``forward`` and ``backward`` called directly,
    over one chunk: it holds what forward saves and says which inputs need gradients."""

    def __init__(self, needs_input_grad: tuple[bool, ...]) -> None:
        self.needs_input_grad = needs_input_grad
        self.saved_tensors: tuple = ()

    def save_for_backward(self, *tensors: Tensor | None) -> None:
        self.saved_tensors = tensors


def _linear_inputs(cell: nn.Module, x: Tensor) -> Tensor:
    return F.linear(x, cell.weight_ih, cell.bias_ih)  # xg = W_ih x + b_ih


class ChunkKernel(NamedTuple):
    """How a kernel Function runs over a chunk.

    ``inputs(cell, xg, state, mask)`` lays out the Function's inputs (its ``apply`` arguments
    without the origin), xg first; ``state_slots`` are the positions of the state's tensors
    among them, in the order of the Function's outputs after ys; ``project(cell, x)`` is the
    input projection xg (the runner's); ``rebuild`` the name of its ``rnnkit.kernels.rebuild``
    function ("": none).
    """

    function: type[torch.autograd.Function]
    inputs: Callable[[Any, Tensor, Leaves, Tensor | None], tuple]
    state_slots: tuple[int, ...]
    project: Callable[[Any, Tensor], Tensor] = _linear_inputs
    rebuild: str = ""


def _lstm_inputs(cell: LSTMCell, xg: Tensor, state: Leaves, mask: Tensor | None) -> tuple:
    peephole = (cell.weight_ci, cell.weight_cf, cell.weight_co) if cell.peephole else (None,) * 3
    ln = (cell.weight_ln_hh, cell.weight_ln_c, cell.bias_ln_c) if cell.layer_norm else (None,) * 3
    return (xg, *state, mask, cell.weight_hh, cell.bias_hh, *peephole, *ln)


CHUNK_KERNELS: dict[type[nn.Module], ChunkKernel] = {
    ElmanCell: ChunkKernel(
        ElmanBPTT,
        lambda c, xg, s, m: (xg, *s, c.weight_hh, c.bias_hh, m, c.nonlinearity),
        (1,),
        rebuild="elman",
    ),
    GRUCell: ChunkKernel(
        GRUBPTT,
        lambda c, xg, s, m: (xg, *s, c.weight_hh, c.bias_hh, m, c.reset_after),
        (1,),
        rebuild="gru",
    ),
    MinimalGRUCell: ChunkKernel(
        MinimalGRUBPTT,
        lambda c, xg, s, m: (xg, *s, c.weight_hh, c.bias_hh, m),
        (1,),
        rebuild="minimal_gru",
    ),
    JordanCell: ChunkKernel(
        JordanBPTT,
        lambda c, xg, s, m: (
            (xg, *s, c.weight_yh, c.bias_yh, c.weight_hy, c.bias_hy, m)
            + (c.nonlinearity, c.output_nonlinearity)
        ),
        (1,),
    ),
    LSTMCell: ChunkKernel(
        LSTMBPTT, _lstm_inputs, (1, 2), lambda c, x: c.input_gates(x), rebuild="lstm"
    ),
}
"""Cell class -> how its kernel runs a chunk; the exact type, as ``rnnkit.kernels.registry``."""


def has_chunk_kernel(cell: nn.Module) -> bool:
    """Whether ``cell`` checkpoints through time inside its kernel (``RecomputeBPTT``)."""
    return type(cell) in CHUNK_KERNELS


class _Replayed(NamedTuple):
    """A chunk recomputed for backward: what ``backward`` needs of it."""

    cell: nn.Module
    x: Tensor  # the chunk's input, a leaf that requires grad if ∂L/∂x is wanted
    state: Leaves  # the fused op's initial state (leaves); unused by the hand kernels
    outputs: tuple  # the hand kernels: (ctx, xg, args); the fused op: (ys, *final)
    wanted: list[Tensor]  # the parameters whose gradients are wanted
    need_x: bool


class _HandChunks:
    """A chunk through a hand-derived kernel: its Function's forward, then its backward."""

    def __init__(self, kernel: ChunkKernel) -> None:
        self.kernel = kernel

    def forward(self, cell: nn.Module, x: Tensor, state: Leaves, mask) -> tuple[Tensor, Leaves]:
        k = self.kernel
        args = k.inputs(cell, k.project(cell, x), state, mask)
        ys, *final = k.function.forward(_ChunkContext((False,) * len(args)), *args)
        return ys, tuple(final)

    def _prepare(self, cell, x: Tensor, state: Leaves, mask, need_x: bool, needed: list[bool]):
        """The chunk's projection under autograd, the Function's inputs and a context."""
        k = self.kernel
        params = list(cell.parameters())
        wanted = [p for p, need in zip(params, needed, strict=True) if need]
        with torch.enable_grad():  # the projection's graph, for ∂L/∂x and ∂L/∂W_ih, ∂L/∂b_ih
            x_ = x.detach().requires_grad_(need_x)
            xg = k.project(cell, x_)
        args = k.inputs(cell, xg.detach(), state, mask)
        wanted_ids = {id(p) for p in wanted}
        needs = tuple(
            j == 0 or j in k.state_slots or (isinstance(a, Tensor) and id(a) in wanted_ids)
            for j, a in enumerate(args)
        )
        ctx = _ChunkContext(needs)
        return ctx, args, _Replayed(cell, x_, (), (ctx, xg, args), wanted, need_x)

    def replay(
        self, cell, x: Tensor, state: Leaves, mask, need_x: bool, needed: list[bool]
    ) -> tuple[Tensor, Leaves, _Replayed]:
        ctx, args, handle = self._prepare(cell, x, state, mask, need_x, needed)
        ys, *final = self.kernel.function.forward(ctx, *args)  # the activations, saved in ctx
        return ys, tuple(final), handle

    def rebuild(
        self, cell, x: Tensor, state: Leaves, hs: Tensor, need_x: bool, needed: list[bool]
    ) -> _Replayed:
        """The chunk's activations from its known states hs (k, B, H), without the recursion
        (no mask): ``replay``'s handle, to rounding."""
        ctx, args, handle = self._prepare(cell, x, state, None, need_x, needed)
        REBUILDS[self.kernel.rebuild](ctx, hs, *args)
        return handle

    def backward(
        self, r: _Replayed, grad_ys: Tensor, grad_final: Leaves
    ) -> tuple[Tensor | None, Leaves, Grads]:
        k = self.kernel
        ctx, xg, args = r.outputs
        grads = k.function.backward(ctx, grad_ys, *grad_final)  # the hand-derived BPTT
        slot = {id(p): i for i, p in enumerate(r.cell.parameters())}
        out: Grads = {}
        for j, (a, g) in enumerate(zip(args, grads[: len(args)], strict=True)):
            if g is not None and j and j not in k.state_slots and id(a) in slot:
                out[slot[id(a)]] = g
        # ∂L/∂x, ∂L/∂W_ih, ∂L/∂b_ih (and the input norm's) from ∂L/∂xg
        grad_x = None
        wanted = [r.x] * r.need_x + r.wanted
        if wanted and xg.requires_grad:
            found = torch.autograd.grad(xg, wanted, grads[0], allow_unused=True)
            grad_x = found[0] if r.need_x else None
            for p, g in zip(r.wanted, found[int(r.need_x) :], strict=True):
                if g is not None:
                    i = slot[id(p)]
                    out[i] = g if i not in out else out[i] + g
        return grad_x, tuple(grads[j] for j in k.state_slots), out


class _FusedLSTMChunks:
    """A chunk of the plain LSTM through torch's fused op: without a graph in forward, and
    recomputed under autograd in backward (the op's own backward)."""

    def forward(self, cell: LSTMCell, x: Tensor, state: Leaves, mask) -> tuple[Tensor, Leaves]:
        with torch.no_grad():
            return lstm_sequence_fused(cell, x, state)

    def replay(
        self, cell, x: Tensor, state: Leaves, mask, need_x: bool, needed: list[bool]
    ) -> tuple[Tensor, Leaves, _Replayed]:
        wanted = [p for p, need in zip(cell.parameters(), needed, strict=True) if need]
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(need_x)
            s_ = tuple(s.detach().requires_grad_() for s in state)
            ys, final = lstm_sequence_fused(cell, x_, s_)
        replayed = _Replayed(cell, x_, s_, (ys, *final), wanted, need_x)
        return ys.detach(), tuple(f.detach() for f in final), replayed

    def backward(
        self, r: _Replayed, grad_ys: Tensor, grad_final: Leaves
    ) -> tuple[Tensor | None, Leaves, Grads]:
        wanted = [*r.state, *[r.x] * r.need_x, *r.wanted]
        found = torch.autograd.grad(r.outputs, wanted, [grad_ys, *grad_final], allow_unused=True)
        n = len(r.state)
        grad_x = found[n] if r.need_x else None
        slot = {id(p): i for i, p in enumerate(r.cell.parameters())}
        out = {slot[id(p)]: g for p, g in zip(r.wanted, found[n + r.need_x :], strict=True)}
        return grad_x, tuple(found[:n]), {i: g for i, g in out.items() if g is not None}


def can_rebuild(cell: nn.Module, runner: _HandChunks | _FusedLSTMChunks) -> bool:
    """Whether ``runner`` (``cell``'s chunk runner) rebuilds chunks from known states
    (``_HandChunks.rebuild``): a hand kernel's, for Elman (any nonlinearity), GRU, minimal GRU
    and the LSTM without peepholes or layer norm. Not the LSTM that runs through torch's fused
    op: its own backward is faster than the hand kernel's, by more than the replay that a
    rebuild saves (measured: benchmarks/checkpoint_memory.py --time)."""
    if not isinstance(runner, _HandChunks) or not runner.kernel.rebuild:
        return False
    return not (type(cell) is LSTMCell and (cell.peephole or cell.layer_norm))


def chunks_for(cell: nn.Module, x: Tensor, mask: Tensor | None) -> _HandChunks | _FusedLSTMChunks:
    """The chunk runner of ``cell`` (one with ``has_chunk_kernel``) over inputs like x."""
    if type(cell) is LSTMCell and use_fused(cell, x, mask):
        return _FusedLSTMChunks()
    return _HandChunks(CHUNK_KERNELS[type(cell)])
