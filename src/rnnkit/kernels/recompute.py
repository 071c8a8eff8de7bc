r"""Checkpointing through time inside the kernels: keep the states at chunk boundaries, recompute
each chunk's activations in backward.

A kernel Function (``ElmanBPTT``, ``LSTMBPTT``, ...) saves its activations at every step for
backward: about G·H numbers per step and sequence (the gates, h, c). With chunks of k steps,
``RecomputeBPTT`` runs the same kernel over the sequence one chunk at a time and keeps only

- the layer's input x (T, B, I), from which xg = W_ih x + b_ih is recomputed, one matrix
  product per chunk (storing xg would cost as much as the gates, G·H per step);
- the state at the start of every chunk, s_0, s_k, s_2k, ... (⌈T/k⌉ of them);

and its backward walks the chunks from last to first. For chunk [a, b) it

1. recomputes xg_{a..b-1} from x and runs the kernel's own forward over the chunk from s_a,
   without a graph (the kernel saves its activations, for this chunk only);
2. runs the kernel's hand-derived backward over the chunk, given ∂L/∂y_t for t in [a, b) and
   δs_b, the gradient reaching the chunk's last state from the future: for the last chunk that
   of the final state, for every other the δs of its successor's initial state, which step 2
   of that chunk returned. It returns ∂L/∂xg_t, δs_a and the chunk's recurrent weight
   gradients, each one product over the chunk's k·B rows;
3. takes ∂L/∂x and ∂L/∂W_ih, ∂L/∂b_ih through the projection's backward from ∂L/∂xg.

The parameter gradients are the sums of the chunks' (the chain rule splits Σ_t over the
chunks), and δs_a is exactly the δh_{t-1} the whole-sequence recursion computes at t = a, so the
result is the same function as the kernel over the whole sequence. Memory: the input, the
outputs and ⌈T/k⌉ states, plus one chunk's activations at a time, instead of every step's;
time: the recurrence's forward (and the input projection) run twice.

The kernels take part without change: a kernel's ``torch.autograd.Function`` is called through
its ``forward`` and ``backward`` with a context of this module's (``_ChunkContext``), and
``CHUNK_KERNELS`` says how to lay out its inputs (``ChunkKernel``). The plain LSTM without a
mask, where the "lstm" backend runs torch's fused op (``rnnkit.kernels.lstm.use_fused``),
recomputes a chunk through that op under autograd instead (``_FusedLSTMChunks``).

Second derivatives (``create_graph=True``) go through ``rnnkit.kernels.dispatch``: the inputs of
``RecomputeBPTT`` are the sequence's origin, from which the generic path recomputes it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rnnkit.cells.base import State
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.jordan import JordanCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.minimal_gru import MinimalGRUCell
from rnnkit.kernels.dispatch import origin, second_order
from rnnkit.kernels.elman import ElmanBPTT
from rnnkit.kernels.gru import GRUBPTT
from rnnkit.kernels.jordan import JordanBPTT
from rnnkit.kernels.lstm import LSTMBPTT, lstm_sequence_fused, use_fused
from rnnkit.kernels.minimal_gru import MinimalGRUBPTT
from rnnkit.kernels.registry import Runner

Leaves = tuple[Tensor, ...]
"""A state as its tensors: (h,) or (h, c)."""


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
    """How ``RecomputeBPTT`` runs one kernel Function over a chunk.

    ``inputs(cell, xg, state, mask)`` lays out the Function's inputs (its ``apply`` arguments
    without the origin), xg first; ``state_slots`` are the positions of the state's tensors
    among them, in the order of the Function's outputs after ys; ``project(cell, x)`` is the
    input projection xg (the runner's).
    """

    function: type[torch.autograd.Function]
    inputs: Callable[[Any, Tensor, Leaves, Tensor | None], tuple]
    state_slots: tuple[int, ...]
    project: Callable[[Any, Tensor], Tensor] = _linear_inputs


def _lstm_inputs(cell: LSTMCell, xg: Tensor, state: Leaves, mask: Tensor | None) -> tuple:
    peephole = (cell.weight_ci, cell.weight_cf, cell.weight_co) if cell.peephole else (None,) * 3
    ln = (cell.weight_ln_hh, cell.weight_ln_c, cell.bias_ln_c) if cell.layer_norm else (None,) * 3
    return (xg, *state, mask, cell.weight_hh, cell.bias_hh, *peephole, *ln)


CHUNK_KERNELS: dict[type[nn.Module], ChunkKernel] = {
    ElmanCell: ChunkKernel(
        ElmanBPTT,
        lambda c, xg, s, m: (xg, *s, c.weight_hh, c.bias_hh, m, c.nonlinearity),
        (1,),
    ),
    GRUCell: ChunkKernel(
        GRUBPTT,
        lambda c, xg, s, m: (xg, *s, c.weight_hh, c.bias_hh, m, c.reset_after),
        (1,),
    ),
    MinimalGRUCell: ChunkKernel(
        MinimalGRUBPTT, lambda c, xg, s, m: (xg, *s, c.weight_hh, c.bias_hh, m), (1,)
    ),
    JordanCell: ChunkKernel(
        JordanBPTT,
        lambda c, xg, s, m: (
            (xg, *s, c.weight_yh, c.bias_yh, c.weight_hy, c.bias_hy, m)
            + (c.nonlinearity, c.output_nonlinearity)
        ),
        (1,),
    ),
    LSTMCell: ChunkKernel(LSTMBPTT, _lstm_inputs, (1, 2), lambda c, x: c.input_gates(x)),
}
"""Cell class -> how its kernel runs a chunk; the exact type, as ``rnnkit.kernels.registry``."""


def has_chunk_kernel(cell: nn.Module) -> bool:
    """Whether ``cell`` checkpoints through time inside its kernel (``RecomputeBPTT``)."""
    return type(cell) in CHUNK_KERNELS


Grads = dict[int, Tensor]
"""Parameter gradients by the parameter's position in ``cell.parameters()``."""


class _HandChunks:
    """A chunk through a hand-derived kernel: its Function's forward, then its backward."""

    def __init__(self, kernel: ChunkKernel) -> None:
        self.kernel = kernel

    def forward(self, cell: nn.Module, x: Tensor, state: Leaves, mask) -> tuple[Tensor, Leaves]:
        k = self.kernel
        args = k.inputs(cell, k.project(cell, x), state, mask)
        ys, *final = k.function.forward(_ChunkContext((False,) * len(args)), *args)
        return ys, tuple(final)

    def backward(
        self, cell, x, state, mask, grad_ys, grad_final, need_x: bool, needed: list[bool]
    ) -> tuple[Tensor | None, Leaves, Grads]:
        k = self.kernel
        params = list(cell.parameters())
        with torch.enable_grad():  # the projection's graph, for ∂L/∂x and ∂L/∂W_ih, ∂L/∂b_ih
            x_ = x.detach().requires_grad_(need_x)
            xg = k.project(cell, x_)
        args = k.inputs(cell, xg.detach(), state, mask)
        slot = {id(p): i for i, p in enumerate(params)}  # a parameter among the kernel's inputs
        needs = tuple(
            j == 0
            or j in k.state_slots
            or (isinstance(a, Tensor) and id(a) in slot and needed[slot[id(a)]])
            for j, a in enumerate(args)
        )
        ctx = _ChunkContext(needs)
        k.function.forward(ctx, *args)  # recompute: the chunk's activations, saved in ctx
        grads = k.function.backward(ctx, grad_ys, *grad_final)  # the hand-derived BPTT
        out: Grads = {}
        for j, (a, g) in enumerate(zip(args, grads[: len(args)], strict=True)):
            if g is not None and j not in k.state_slots and j and id(a) in slot:
                out[slot[id(a)]] = g
        # ∂L/∂x, ∂L/∂W_ih, ∂L/∂b_ih (and the input norm's) from ∂L/∂xg
        wanted = [x_] if need_x else []
        wanted += [p for p, need in zip(params, needed, strict=True) if need]
        if wanted and xg.requires_grad:
            found = torch.autograd.grad(xg, wanted, grads[0], allow_unused=True)
            grad_x = found[0] if need_x else None
            for p, g in zip(wanted[int(need_x) :], found[int(need_x) :], strict=True):
                if g is not None:
                    i = slot[id(p)]
                    out[i] = g if i not in out else out[i] + g
        else:
            grad_x = None
        return grad_x, tuple(grads[j] for j in k.state_slots), out


class _FusedLSTMChunks:
    """A chunk of the plain LSTM through torch's fused op: without a graph in forward, and
    recomputed under autograd in backward (the op's own backward)."""

    def forward(self, cell: LSTMCell, x: Tensor, state: Leaves, mask) -> tuple[Tensor, Leaves]:
        with torch.no_grad():
            ys, final = lstm_sequence_fused(cell, x, state)
        return ys, final

    def backward(
        self, cell, x, state, mask, grad_ys, grad_final, need_x: bool, needed: list[bool]
    ) -> tuple[Tensor | None, Leaves, Grads]:
        params = list(cell.parameters())
        with torch.enable_grad():
            x_ = x.detach().requires_grad_(need_x)
            s_ = tuple(s.detach().requires_grad_() for s in state)
            ys, final = lstm_sequence_fused(cell, x_, s_)
            wanted = [*s_, *([x_] if need_x else [])]
            wanted += [p for p, need in zip(params, needed, strict=True) if need]
            found = torch.autograd.grad(
                [ys, *final], wanted, [grad_ys, *grad_final], allow_unused=True
            )
        n = len(s_)
        grad_x = found[n] if need_x else None
        rest = iter(found[n + int(need_x) :])
        out = {i: next(rest) for i, need in enumerate(needed) if need}
        return grad_x, tuple(found[:n]), {i: g for i, g in out.items() if g is not None}


def _chunks_for(cell: nn.Module, x: Tensor, mask: Tensor | None):
    if type(cell) is LSTMCell and use_fused(cell, x, mask):
        return _FusedLSTMChunks()
    return _HandChunks(CHUNK_KERNELS[type(cell)])


def _piece(mask: Tensor | None, a: int, k: int) -> Tensor | None:
    return None if mask is None else mask[a : a + k]


class RecomputeBPTT(torch.autograd.Function):
    """A kernel over the whole sequence in chunks of k steps, storing only the input and the
    chunks' initial states; backward recomputes one chunk at a time (the module docstring).

    Inputs: k, the ``Origin`` of ``rnnkit.kernels.dispatch`` (the cell, the mask (T, B, 1) or
    None, its parameter names), xs (T, B, I), the initial state's tensors, the cell's
    parameters. Outputs: ys (T, B, O) and the final state's tensors.
    """

    @staticmethod
    def forward(ctx: Any, k: int, origin_: Any, xs: Tensor, *tensors: Tensor):
        cell, mask, n = origin_.cell, origin_.mask, origin_.n_state
        chunks = _chunks_for(cell, xs, mask)
        state = tuple(tensors[:n])
        starts = range(0, len(xs), k)
        firsts = []  # the chunks' initial states
        ys = None
        for a in starts:
            firsts.append(state)
            y, state = chunks.forward(cell, xs[a : a + k], state, _piece(mask, a, k))
            if ys is None:
                ys = y.new_empty(len(xs), *y.shape[1:])  # (T, B, O)
            ys[a : a + len(y)] = y
        boundaries = [torch.stack(leaf) for leaf in zip(*firsts, strict=True)]  # (⌈T/k⌉, B, ·)
        ctx.k, ctx.origin, ctx.chunks, ctx.n_tensors = k, origin_, chunks, 1 + len(tensors)
        ctx.save_for_backward(xs, *tensors, *boundaries)
        return ys, *state

    @staticmethod
    def backward(ctx: Any, grad_ys: Tensor, *grad_final: Tensor):
        saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            return second_order(ctx, 1, saved[: ctx.n_tensors], (grad_ys, *grad_final))
        k, origin_ = ctx.k, ctx.origin
        cell, mask, n = origin_.cell, origin_.mask, origin_.n_state
        xs, boundaries = saved[0], saved[ctx.n_tensors :]
        need_x = ctx.needs_input_grad[2]
        needed = list(ctx.needs_input_grad[3 + n :])
        grad_xs = torch.empty_like(xs) if need_x else None
        sums: Grads = {}
        grad_state = tuple(g.contiguous() for g in grad_final)
        for j, a in reversed(list(enumerate(range(0, len(xs), k)))):
            state = tuple(b[j] for b in boundaries)
            g_x, grad_state, grads = ctx.chunks.backward(
                cell,
                xs[a : a + k],
                state,
                _piece(mask, a, k),
                grad_ys[a : a + k],
                grad_state,
                need_x,
                needed,
            )
            if need_x:
                grad_xs[a : a + k] = g_x
            for i, g in grads.items():
                sums[i] = g if i not in sums else sums[i].add_(g)
        grad_params = [sums.get(i) if need else None for i, need in enumerate(needed)]
        needs_state = ctx.needs_input_grad[3 : 3 + n]
        grad_s0 = [g if need else None for g, need in zip(grad_state, needs_state, strict=True)]
        return None, None, grad_xs, *grad_s0, *grad_params


def recompute_sequence(
    cell: nn.Module, xs: Tensor, state: State, mask: Tensor | None, k: int
) -> tuple[Tensor, State]:
    """``cell`` (one with a chunk kernel, ``has_chunk_kernel``) over xs (T, B, I) from
    ``state``, checkpointed through time in chunks of ``k`` steps inside its kernel; the same
    function as its kernel's runner. mask (T, B, 1) bool or None."""
    if not has_chunk_kernel(cell):
        raise ValueError(f"{type(cell).__name__} has no chunk kernel; use checkpoint_chunks")
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.bool()
    ys, *final = RecomputeBPTT.apply(k, *origin(cell, xs, state, mask))
    return ys, tuple(final) if isinstance(state, tuple) else final[0]


def checkpoint_chunks(
    run: Runner, cell: nn.Module, xs: Tensor, state: State, mask: Tensor | None, k: int
) -> tuple[Tensor, State]:
    """``run(cell, ...)`` over chunks of ``k`` steps, each under ``torch.utils.checkpoint``
    (non-reentrant, RNG state kept): for cells without a chunk kernel (a user's cell). Backward
    re-runs each chunk under autograd from its saved input and initial state."""
    outputs = []
    # split, not xs[a:b] in a loop: one op whose backward concatenates the chunk gradients
    for i, chunk in enumerate(xs.split(k)):
        ys, state = checkpoint(run, cell, chunk, state, _piece(mask, i * k, k), use_reentrant=False)
        outputs.append(ys)
    return torch.cat(outputs), state
