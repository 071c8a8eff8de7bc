"""Recurrent: runs any cell over a sequence, the one layer that loops over time.

It runs the kernel registered for the cell's exact type (``rnnkit.kernels``), else the generic
loop of cell calls under autograd (``rnnkit.kernels.generic``, importable from here too).

Sequences are time-major, (T, B, ·). Variable lengths come as a ``lengths`` tensor (B,): the state
stops updating after each sequence's last valid step, so the final state is that step's state,
and outputs at padding positions are zero. ``reverse=True`` runs over the valid prefix of each
sequence from its end (padding stays at the end), as the backward half of a bidirectional layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnnkit.cells.base import State, map_state
from rnnkit.kernels import find_kernel, generic
from rnnkit.kernels.chunks import has_chunk_kernel
from rnnkit.kernels.recompute import checkpoint_chunks, recompute_sequence

__all__ = [
    "Recurrent",
    "check_lengths",
    "check_state",
    "flip_sequences",
    "generic",
    "length_mask",
    "map_state",
    "reverse_index",
]


def length_mask(lengths: Tensor, T: int, dtype=torch.bool) -> Tensor:
    """(T, B, 1): True where step t < lengths[b]."""
    steps = torch.arange(T, device=lengths.device).unsqueeze(1)  # (T, 1)
    return (steps < lengths.unsqueeze(0)).unsqueeze(-1).to(dtype)


def check_lengths(lengths: Tensor | list | None, T: int, B: int, device) -> Tensor | None:
    """Validate ``lengths`` (B,) against a (T, B, ·) batch; one-line errors naming the problem."""
    if lengths is None:
        return None
    lengths = torch.as_tensor(lengths)
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool or lengths.dim() != 1:
        raise ValueError(
            f"lengths must be a 1-D integer tensor, got {lengths.dtype} {tuple(lengths.shape)}"
        )
    if lengths.numel() != B:
        raise ValueError(f"lengths has {lengths.numel()} entries but the batch has {B} sequences")
    if B and (int(lengths.min()) < 0 or int(lengths.max()) > T):
        raise ValueError(
            f"lengths must lie in [0, {T}] (the padded length), got min {int(lengths.min())} "
            f"and max {int(lengths.max())}"
        )
    return lengths.to(device=device, dtype=torch.long)


def reverse_index(lengths: Tensor | None, T: int, B: int, device) -> Tensor:
    """(T, B) time indices that reverse each sequence's valid prefix and keep padding in place.

    The map is its own inverse, so it both flips the inputs and flips the outputs back.
    """
    t = torch.arange(T, device=device).unsqueeze(1).expand(T, B)
    if lengths is None:
        return T - 1 - t
    L = lengths.unsqueeze(0)
    return torch.where(t < L, L - 1 - t, t)


def flip_sequences(xs: Tensor, lengths: Tensor | None) -> Tensor:
    """Reverse the valid prefix of each sequence of xs (T, B, ·); padding stays at the end."""
    T, B = xs.shape[:2]
    idx = reverse_index(lengths, T, B, xs.device)
    return xs.gather(0, idx.view(T, B, *([1] * (xs.dim() - 2))).expand_as(xs))


def check_state(cell: nn.Module, state: State, B: int) -> None:
    """A given state against the cell's ``state_sizes`` (where it declares them): one (B, size)
    tensor per entry. A cell's step would broadcast a (1, H) state, or a (B, 1) one, silently."""
    sizes = getattr(cell, "state_sizes", None)
    if sizes is None:
        return
    leaves = state if isinstance(state, tuple) else (state,)
    want = [(B, n) for n in sizes]
    got = [tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__ for t in leaves]
    if got != want:
        want_s = want[0] if len(want) == 1 else tuple(want)
        got_s = got[0] if len(got) == 1 else tuple(got)
        raise ValueError(f"state must have shape {want_s} (batch, state size), got {got_s}")


class Recurrent(nn.Module):
    """Runs a cell over a sequence: ``forward(xs, state=None, *, lengths=None, reverse=False)``.

    Args:
        cell: any module with ``forward(x, state) -> (y, state)`` and ``init_state(batch)``.
        use_kernel: run built-in cells through their hand-derived BPTT kernel, the one
            registered for the cell's exact type (``rnnkit.kernels``; derivatives of every
            order, see ``rnnkit.kernels.dispatch``). False, or a cell whose exact type has no
            kernel (a user's cell, also a subclass of a built-in one), takes the generic path:
            a loop of cell calls that trains through autograd (``rnnkit.kernels.generic``).
            Either way, one step (T = 1) without ``lengths`` while autograd records nothing
            (``torch.no_grad()``, or nothing requires grad: a sampler's call) is a single call
            of the cell, the generic path's one step.

    ``checkpoint_steps`` k > 0 checkpoints through time while autograd records (T > k): only
    the input and the states at every k-th step are kept for backward, which recomputes one
    chunk of k steps at a time; the same values and gradients. A cell with a kernel recomputes
    inside it (``rnnkit.kernels.recompute``); any other cell runs its chunks under
    ``torch.utils.checkpoint``.

    Shapes: xs (T, B, I); state as the cell's; lengths (B,) integers in [0, T].
    Returns ys (T, B, O), zero after each sequence's end, and the final state, which for each
    sequence is its state after its own last step.
    """

    def __init__(self, cell: nn.Module, *, use_kernel: bool = True) -> None:
        super().__init__()
        self.cell = cell
        self.use_kernel = use_kernel

    def forward(
        self,
        xs: Tensor,
        state: State | None = None,
        *,
        lengths: Tensor | None = None,
        reverse: bool = False,
        checkpoint_steps: int = 0,
    ) -> tuple[Tensor, State]:
        if xs.dim() != 3:
            raise ValueError(f"input must be (T, B, features), got shape {tuple(xs.shape)}")
        T, B = xs.shape[:2]
        if isinstance(checkpoint_steps, bool) or not isinstance(checkpoint_steps, int):
            raise ValueError(f"checkpoint_steps must be an integer, got {checkpoint_steps!r}")
        if checkpoint_steps < 0:
            raise ValueError(f"checkpoint_steps must be >= 0 (0: off), got {checkpoint_steps}")
        lengths = check_lengths(lengths, T, B, xs.device)
        if state is None:
            state = self.cell.init_state(B, device=xs.device, dtype=xs.dtype)
        else:
            check_state(self.cell, state, B)
        if T == 1 and lengths is None and not self._records_graph(xs, state):
            # One step without autograd (a sampler's call): the generic path's single cell call,
            # without the kernel's set-up. Reversing one step is the identity.
            y, state = self.cell(xs[0], state)
            return y.unsqueeze(0).clone(), state  # (1, B, O), not aliasing the state
        if reverse:
            xs = flip_sequences(xs, lengths)
        mask = None if lengths is None else length_mask(lengths, T)
        run = find_kernel(self.cell) if self.use_kernel else None
        k = checkpoint_steps
        if k and T > k and self._records_graph(xs, state):
            if run and has_chunk_kernel(self.cell):
                ys, state = recompute_sequence(self.cell, xs, state, mask, k)
            else:
                ys, state = checkpoint_chunks(run or generic, self.cell, xs, state, mask, k)
        else:
            ys, state = (run or generic)(self.cell, xs, state, mask)
        if reverse:
            ys = flip_sequences(ys, lengths)
        return ys, state

    def _records_graph(self, xs: Tensor, state: State) -> bool:
        """Whether autograd would record this call: grad mode on and some input needs grad."""
        if not torch.is_grad_enabled():
            return False
        if xs.requires_grad or any(p.requires_grad for p in self.cell.parameters()):
            return True
        found = []
        map_state(lambda s: found.append(s.requires_grad), state)
        return any(found)

    def generic(self, xs: Tensor, state: State, mask: Tensor | None) -> tuple[Tensor, State]:
        """The generic path: the cell stepped T times under autograd (``generic``)."""
        return generic(self.cell, xs, state, mask)

    def extra_repr(self) -> str:
        return f"use_kernel={self.use_kernel}"
