"""Truncated backpropagation through time: split a long sequence into windows of k steps.

Williams & Peng, "An efficient gradient-based algorithm for on-line training of recurrent
network trajectories", 1990. The state is carried from one window to the next and detached, so
gradients flow back at most k steps; full BPTT is the case k >= T (one window), one code path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from torch import Tensor

from rnnkit.cells.base import State


def detach_state(state):
    """Cut a state (a tensor, or nested tuples/lists of tensors) off its history.

    If we didn't, the model would try backpropagating all the way to start of the dataset.
    """
    if state is None:
        return None
    if isinstance(state, Tensor):
        return state.detach()
    return type(state)(detach_state(s) for s in state)


def windows(T: int, bptt_len: int) -> Iterator[slice]:
    """The slices [0, k), [k, 2k), ... covering 0..T; the last may be shorter."""
    if isinstance(bptt_len, bool) or not isinstance(bptt_len, int) or bptt_len < 1:
        raise ValueError(f"bptt_len must be a positive integer, got {bptt_len!r}")
    for start in range(0, T, bptt_len):
        yield slice(start, min(start + bptt_len, T))


def truncated_bptt(
    model: Callable[[Tensor, State | None], tuple[Tensor, State]],
    xs: Tensor,
    targets: Tensor,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    bptt_len: int,
    state: State | None = None,
) -> tuple[float, State]:
    """Run ``model`` over xs (T, B, ·) window by window, backpropagating each window's loss.

    Args:
        model: ``model(xs_window, state) -> (ys_window, state)``, e.g. a ``Recurrent``.
        targets: (T, ...) time-major targets, cut into the same windows as xs.
        loss_fn: ``loss_fn(ys_window, targets_window) -> scalar``; use a sum over steps (not a
            mean) so that the windows' losses add up to the whole sequence's.
        bptt_len: k, the window length; k >= T is full BPTT.
        state: the initial state, carried (detached) in from an earlier stream position.

    Gradients accumulate in the parameters' ``.grad``; the caller steps the optimiser.
    Returns the summed loss and the final state (detached), ready to carry into the next call.
    """
    total = 0.0
    for window in windows(len(xs), bptt_len):
        ys, state = model(xs[window], state)
        loss = loss_fn(ys, targets[window])
        loss.backward()
        total += float(loss.detach())
        state = detach_state(state)
    return total, state
