r"""Checkpointing through time inside the kernels, across a stack of layers: keep the stack's
input and each layer's state at chunk boundaries, recompute each chunk of all layers in backward.

A kernel Function (``ElmanBPTT``, ``LSTMBPTT``, ...) saves its activations at every step for
backward: about (G + 3)·H numbers a step, sequence and layer (the gates, h, c). For layers
1..L (layer l's input x^l, output y^l; x^1 the stack's input) and chunks of k steps,
``RecomputeBPTT`` keeps only

- the stack's input x^1 (T, B, I), which the caller holds anyway;
- each layer's state at the start of every chunk, s^l_0, s^l_k, s^l_2k, ... (⌈T/k⌉ of them);
- the dropout masks between layers, as booleans (only in training with dropout);

and no layer's output but the top one's, which it returns. Layer l + 1's input is layer l's
output through the link between them (``Stack.link``): x^{l+1} = D^l ⊙ (y^l + m ⊙ x^l) with the
residual term where ``residual`` is on and the widths agree, m the (T, B, 1) length mask (1
without lengths) and D^l = keep^l / (1 - p) the dropout noise for l < L (1 for the top layer).

Forward runs the chunks in order, each through all layers (a kernel's forward without a graph,
``rnnkit.kernels.chunks``). Backward walks the chunks from last to first; for chunk [a, b) it

1. recomputes the chunk through the stack: layer 1 from x^1_{a..b-1} and s^1_a, layer l from
   s^l_a and the link of layer l - 1's recomputed outputs, each kernel keeping its activations
   for this chunk only (``replay``). The top layer L is not run again when its output is the
   stack's (no residual term nor dropout after it), there is no length mask and its kernel can
   ``rebuild``: its states over the chunk are the returned ys_{a..b-1}, which the Function keeps
   (the caller holds them anyway), so its activations come from one product over the chunk's
   rows and element-wise work (``rnnkit.kernels.rebuild``), not from k sequential steps. A
   stack of L layers then recomputes L - 1 recursions; one layer, none;
2. goes down the stack: with g = ∂L/∂x^{l+1} for the chunk's steps (for the top layer, the
   incoming ∂L/∂ys), ∂L/∂y^l = D^l ⊙ g, and the kernel's own hand-derived backward over the
   chunk, given ∂L/∂y^l and δs^l_b, returns ∂L/∂x^l (through the input projection), δs^l_a
   and the chunk's parameter gradients; then ∂L/∂x^l += m ⊙ D^l ⊙ g for a residual link, and
   that is the g of layer l - 1.

δs^l_b is the gradient reaching layer l's state at the chunk's end from the future: that of its
final state for the last chunk, else the δs^l_a of the following chunk, which step 2 of that
chunk returned; it is exactly the δh_{t-1} (δc_{t-1}) the whole-sequence recursion has at
t = b. Each step's output gradient reaches it whole (through the later layers' inputs, summed
over the layers above as the chain rule says), and the parameter gradients are the chunks'
sums, so the result is the function of storing everything, to rounding. Memory: x^1, the
(L·⌈T/k⌉) boundary states, the returned outputs and one chunk's activations of all layers at a
time (k ≈ √T balances the last two terms). Time: every layer's forward runs twice, but a top
layer rebuilt from its outputs.

Second derivatives (``create_graph=True``): the Function's inputs are the tensors everything was
computed from (x^1, the initial states, the parameters), so its backward under grad mode
recomputes the stack through the generic path (``rnnkit.kernels.dispatch.Origin``) with the
same masks and differentiates that with ``create_graph=True``.

Cells without a chunk kernel (a user's cell) run their chunks under ``torch.utils.checkpoint``
instead (``checkpoint_chunks``; ``rnnkit.layers.Stacked`` does that for a whole stack).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from rnnkit.cells.base import State
from rnnkit.kernels.backends import get_backend
from rnnkit.kernels.chunks import Grads, can_rebuild, chunks_for, has_chunk_kernel
from rnnkit.kernels.dispatch import Origin, flatten_state, graph_grads
from rnnkit.kernels.registry import Runner

__all__ = ["checkpoint_chunks", "dropped", "keep_mask", "recompute_sequence", "recompute_stack"]


def keep_mask(shape: tuple[int, ...], p: float, like: Tensor) -> Tensor:
    """Dropout's keep mask (bool) for an output of ``shape`` with ``like``'s dtype and device,
    from the same random numbers ``F.dropout`` draws for it (it draws none for p = 1)."""
    if p == 1:
        return torch.zeros(shape, dtype=torch.bool, device=like.device)
    return torch.empty(shape, dtype=like.dtype, device=like.device).bernoulli_(1 - p).bool()


def dropped(y: Tensor, keep: Tensor, p: float) -> Tensor:
    """y ⊙ keep / (1 - p): ``F.dropout(y, p, True)``'s value for the mask ``keep``."""
    noise = keep.to(y.dtype)
    return y * (noise if p == 1 else noise.div_(1 - p))


class Stack:
    """The layers of a ``RecomputeBPTT`` less their tensors: the cells, the length mask
    (T, B, 1) bool or None, ``residual``, the dropout probability ``p`` and the keep masks
    ``keeps`` (one per layer, None where no dropout follows it), each layer's state arity."""

    def __init__(
        self, cells: list[nn.Module], mask, residual: bool, p: float, keeps, n_state: list[int]
    ) -> None:
        self.cells, self.mask, self.residual, self.p, self.keeps = cells, mask, residual, p, keeps
        self.n_state = n_state
        self.n_params = [len(list(c.parameters())) for c in cells]

    def passes_top(self, widths: tuple[int, int]) -> bool:
        """Whether the top layer's link (its (input, output) widths) leaves its output as is."""
        residual = self.residual and widths[0] == widths[1]
        return self.keeps[-1] is None and not residual

    def split(self, tensors: tuple[Tensor, ...]) -> list[tuple[tuple, tuple]]:
        """Each layer's (state tensors, parameters) from the Function's flat inputs."""
        out, i = [], 0
        for n, m in zip(self.n_state, self.n_params, strict=True):
            out.append((tuple(tensors[i : i + n]), tuple(tensors[i + n : i + n + m])))
            i += n + m
        return out

    def link(self, l: int, x: Tensor, y: Tensor, a: int, b: int) -> Tensor:
        """Layer l + 1's input over steps [a, b) from layer l's input x and output y there."""
        if self.residual and y.shape[-1] == x.shape[-1]:
            y = y + (x if self.mask is None else x * self.mask[a:b].to(x.dtype))
        return y if self.keeps[l] is None else dropped(y, self.keeps[l][a:b], self.p)

    def unlink(self, l: int, widths: tuple[int, int], g: Tensor, a: int, b: int):
        """From g = ∂L/∂(link l's output) over [a, b), with layer l's (input, output) widths:
        ∂L/∂y and the residual's ∂L/∂x (None without a residual term)."""
        if self.keeps[l] is not None:
            g = dropped(g, self.keeps[l][a:b], self.p)
        if not (self.residual and widths[0] == widths[1]):
            return g, None
        return g, g if self.mask is None else g * self.mask[a:b].to(g.dtype)

    def recompute(self, xs: Tensor, tensors: tuple[Tensor, ...]) -> list[Tensor]:
        """[ys, *final states] through the generic path, a graph of differentiable ops."""
        finals, x = [], xs
        layers = zip(self.cells, self.split(tensors), strict=True)
        for l, (cell, (state, params)) in enumerate(layers):
            names = tuple(n for n, _ in cell.named_parameters())
            origin = Origin(cell, names, len(state), self.mask)
            y, *final = origin.recompute((x, *state, *params))
            x = self.link(l, x, y, 0, len(xs))
            finals += final
        return [x, *finals]


def _piece(mask: Tensor | None, a: int, b: int) -> Tensor | None:
    return None if mask is None else mask[a:b]


class RecomputeBPTT(torch.autograd.Function):
    """A stack of kernels over the whole sequence in chunks of k steps, storing the stack's
    input and the layers' states at the chunks' starts (the module docstring).

    Inputs: k, a ``Stack``, xs (T, B, I), then for each layer its initial state's tensors and
    its cell's parameters. Outputs: ys (T, B, O) of the top layer (after its link) and each
    layer's final state's tensors, bottom first.
    """

    @staticmethod
    def forward(ctx: Any, k: int, stack: Stack, xs: Tensor, *tensors: Tensor):
        runners = [chunks_for(cell, xs, stack.mask) for cell in stack.cells]
        states = [state for state, _ in stack.split(tensors)]
        starts = range(0, len(xs), k)
        boundaries = [  # (⌈T/k⌉, B, ·) per layer and state tensor
            [s.new_empty(len(starts), *s.shape) for s in state] for state in states
        ]
        ys = None
        for j, a in enumerate(starts):
            b = min(a + k, len(xs))
            x = xs[a:b]
            for l, (cell, run) in enumerate(zip(stack.cells, runners, strict=True)):
                for bound, s in zip(boundaries[l], states[l], strict=True):
                    bound[j] = s
                y, states[l] = run.forward(cell, x, states[l], _piece(stack.mask, a, b))
                top_widths = (x.shape[-1], y.shape[-1])
                x = stack.link(l, x, y, a, b)
            if ys is None:
                ys = x.new_empty(len(xs), *x.shape[1:])  # (T, B, O)
            ys[a:b] = x
        ctx.k, ctx.stack, ctx.runners, ctx.n_tensors = k, stack, runners, 1 + len(tensors)
        ctx.rebuild_top = (
            get_backend("rebuild") == "auto"
            and stack.mask is None
            and stack.passes_top(top_widths)
            and can_rebuild(stack.cells[-1], runners[-1])
        )
        kept = (ys,) if ctx.rebuild_top else ()
        ctx.save_for_backward(xs, *tensors, *(t for bound in boundaries for t in bound), *kept)
        return ys, *(s for state in states for s in state)

    @staticmethod
    def backward(ctx: Any, grad_ys: Tensor, *grad_finals: Tensor):
        saved, stack = ctx.saved_tensors, ctx.stack
        xs, tensors = saved[0], saved[1 : ctx.n_tensors]
        if torch.is_grad_enabled():  # create_graph: a differentiable backward
            return (None, None, *_differentiable(ctx, xs, tensors, (grad_ys, *grad_finals)))
        k, T, L = ctx.k, len(xs), len(stack.cells)
        boundaries, i = [], ctx.n_tensors
        for n in stack.n_state:
            boundaries.append(saved[i : i + n])
            i += n
        needs = stack.split(ctx.needs_input_grad[3:])
        need_xs = ctx.needs_input_grad[2]
        grad_states, i = [], 0
        for n in stack.n_state:
            grad_states.append(tuple(g.contiguous() for g in grad_finals[i : i + n]))
            i += n
        top_ys = saved[-1] if ctx.rebuild_top else None  # the top layer's states, if kept
        sums: list[Grads] = [{} for _ in range(L)]
        grad_xs = torch.empty_like(xs) if need_xs else None
        for j, a in reversed(list(enumerate(range(0, T, k)))):
            b = min(a + k, T)
            mask = _piece(stack.mask, a, b)
            x, replayed, links = xs[a:b], [], []
            for l, (cell, run) in enumerate(zip(stack.cells, ctx.runners, strict=True)):
                state = tuple(bound[j] for bound in boundaries[l])
                need_x = l > 0 or need_xs
                if l == L - 1 and top_ys is not None:  # its states are the kept outputs
                    hs = top_ys[a:b]
                    replayed.append(run.rebuild(cell, x, state, hs, need_x, list(needs[l][1])))
                    links.append((x.shape[-1], hs.shape[-1]))
                    break
                y, _, r = run.replay(cell, x, state, mask, need_x, list(needs[l][1]))
                replayed.append(r)
                links.append((x.shape[-1], y.shape[-1]))
                x = stack.link(l, x, y, a, b)
            g = grad_ys[a:b]
            for l in reversed(range(L)):
                g, g_res = stack.unlink(l, links[l], g, a, b)
                g, grad_states[l], grads = ctx.runners[l].backward(
                    replayed[l], g.contiguous(), grad_states[l]
                )
                replayed[l] = None  # this layer's chunk activations are done
                if g_res is not None and (l > 0 or need_xs):
                    g = g_res if g is None else g + g_res
                for p, grad in grads.items():
                    sums[l][p] = grad if p not in sums[l] else sums[l][p].add_(grad)
            if need_xs:
                grad_xs[a:b] = g
        out: list[Tensor | None] = [grad_xs]
        for l, (need_state, need_params) in enumerate(needs):
            out += [g if need else None for g, need in zip(grad_states[l], need_state, strict=True)]
            out += [sums[l].get(p) if need else None for p, need in enumerate(need_params)]
        return None, None, *out


def _differentiable(ctx: Any, xs: Tensor, tensors: tuple, grad_outputs: tuple) -> tuple:
    """The gradients of xs and ``tensors`` through the stack recomputed by the generic path,
    with ``create_graph=True`` (second derivatives)."""
    outputs = ctx.stack.recompute(xs, tensors)
    return graph_grads((xs, *tensors), ctx.needs_input_grad[2:], outputs, grad_outputs)


def recompute_stack(
    cells: list[nn.Module],
    xs: Tensor,
    states: list[State],
    mask: Tensor | None,
    k: int,
    residual: bool = False,
    p: float = 0.0,
    keeps: list[Tensor | None] | None = None,
) -> tuple[Tensor, list[State]]:
    """Cells (each with a chunk kernel, ``has_chunk_kernel``) stacked over xs (T, B, I) from
    ``states`` (one per cell), checkpointed through time in chunks of ``k`` steps across the
    stack (``RecomputeBPTT``). ``residual`` and dropout between layers as in
    ``rnnkit.layers.Stacked``, with the keep masks ``keeps`` (T, B, O_l) bool drawn by the caller
    (``keep_mask``; None: no dropout after that layer). mask (T, B, 1) bool or None. Returns
    the top layer's ys and each layer's final state: the function of the stack without
    checkpointing."""
    for cell in cells:
        if not has_chunk_kernel(cell):
            raise ValueError(f"{type(cell).__name__} has no chunk kernel; use checkpoint_chunks")
    if mask is not None and mask.dtype != torch.bool:
        mask = mask.bool()
    keeps = keeps if keeps is not None else [None] * len(cells)
    leaves = [flatten_state(s) for s in states]
    stack = Stack(list(cells), mask, residual, p, keeps, [len(s) for s in leaves])
    tensors = [t for cell, s in zip(cells, leaves, strict=True) for t in (*s, *cell.parameters())]
    ys, *finals = RecomputeBPTT.apply(k, stack, xs, *tensors)
    out, i = [], 0
    for state, n in zip(states, stack.n_state, strict=True):
        out.append(tuple(finals[i : i + n]) if isinstance(state, tuple) else finals[i])
        i += n
    return ys, out


def recompute_sequence(
    cell: nn.Module, xs: Tensor, state: State, mask: Tensor | None, k: int
) -> tuple[Tensor, State]:
    """``cell`` (one with a chunk kernel, ``has_chunk_kernel``) over xs (T, B, I) from
    ``state``, checkpointed through time in chunks of ``k`` steps inside its kernel; the same
    function as its kernel's runner. mask (T, B, 1) bool or None."""
    ys, (final,) = recompute_stack([cell], xs, [state], mask, k)
    return ys, final


def checkpoint_chunks(
    run: Runner, cell: nn.Module, xs: Tensor, state: State, mask: Tensor | None, k: int
) -> tuple[Tensor, State]:
    """``run(cell, ...)`` over chunks of ``k`` steps, each under ``torch.utils.checkpoint``
    (non-reentrant, RNG state kept): for cells without a chunk kernel (a user's cell). Backward
    re-runs each chunk under autograd from its saved input and initial state."""
    outputs = []
    # split, not xs[a:b] in a loop: one op whose backward concatenates the chunk gradients
    for i, chunk in enumerate(xs.split(k)):
        part = _piece(mask, i * k, (i + 1) * k)
        ys, state = checkpoint(run, cell, chunk, state, part, use_reentrant=False)
        outputs.append(ys)
    return torch.cat(outputs), state
