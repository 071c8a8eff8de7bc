"""The cell contract: one step of a recurrence, and nothing else.

A cell maps one input and the previous state to one output and the new state,
``forward(x, state) -> (y, state)``, and knows nothing of time. Any module that keeps this
contract (plus ``init_state``) runs in every layer of rnnkit and trains through autograd: that
is the *generic path*. A built-in cell's kernel (``rnnkit.kernels``), which runs a whole
sequence through the hand-derived BPTT, is found by the cell's exact type; a cell imports nothing
from the kernels.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

State = Tensor | tuple[Tensor, ...]
"""A recurrent state: one tensor (B, H), or a tuple of them (the LSTM's (h, c))."""


def map_state(fn, *states):
    """Apply ``fn`` leaf-wise to states that are tensors or (nested) tuples of tensors."""
    if isinstance(states[0], tuple):
        return tuple(map_state(fn, *parts) for parts in zip(*states, strict=True))
    return fn(*states)


ACTIVATIONS = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda a: a,
}


def check_choice(name: str, value: str, options) -> str:
    """Return ``value`` if it is one of ``options``, else raise a one-line ``ValueError``."""
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value


def check_size(name: str, value: int) -> int:
    """Return ``value`` if it is a positive int; else TypeError (not an int) or ValueError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be a positive integer, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class Cell(nn.Module):
    """Base of the built-in cells: sizes, torch's initialisation and ``init_state``.

    Subclasses set ``state_shapes`` (one width per state tensor) and implement ``forward``.
    ``output_size`` is the width of ``y`` (the hidden size for all cells but Jordan's).
    """

    input_size: int
    hidden_size: int
    output_size: int
    state_sizes: tuple[int, ...]  # one width per state tensor, e.g. (H, H) for the LSTM

    def reset_parameters(self) -> None:
        """torch.nn's scheme: every parameter ~ U(-1/sqrt(H), 1/sqrt(H))."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def init_state(
        self,
        batch_size: int,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> State:
        """Zeros: (B, H) for one state tensor, a tuple of them otherwise."""
        ref = next(self.parameters(), None)
        device = device if device is not None else (ref.device if ref is not None else None)
        dtype = dtype if dtype is not None else (ref.dtype if ref is not None else None)
        zeros = tuple(
            torch.zeros(batch_size, n, device=device, dtype=dtype) for n in self.state_sizes
        )
        return zeros[0] if len(zeros) == 1 else zeros

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"
