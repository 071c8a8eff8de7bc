"""Which cells run through a kernel: a table from a cell's exact type to its kernel's runner.

A kernel computes the equations of one built-in cell class, so it registers for that exact
class (``@register_kernel(ElmanCell)``) and ``find_kernel(cell)`` looks the cell's *exact* type
up: a user's subclass (one that overrides ``forward``, or anything else) is not the cell the
kernel was derived for, and runs through the generic loop of cell calls, which follows whatever
its ``forward`` computes.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from rnnkit.cells.base import State

Runner = Callable[[nn.Module, Tensor, State, Tensor | None], tuple[Tensor, State]]
"""``run(cell, xs, state, mask) -> (ys, final_state)``: xs (T, B, I), mask (T, B, 1) or None."""

KERNELS: dict[type[nn.Module], Runner] = {}
"""Cell class -> the runner of its hand-derived kernel (filled by ``register_kernel``)."""


def register_kernel(cell_class: type[nn.Module]) -> Callable[[Runner], Runner]:
    """Decorator: ``run`` is the kernel of exactly ``cell_class`` (not of its subclasses)."""

    def register(run: Runner) -> Runner:
        if cell_class in KERNELS:
            raise ValueError(f"{cell_class.__name__} already has a kernel: {KERNELS[cell_class]}")
        KERNELS[cell_class] = run
        return run

    return register


def find_kernel(cell: nn.Module) -> Runner | None:
    """The kernel that runs ``cell``, by its exact type; None: the generic path runs it."""
    return KERNELS.get(type(cell))


def has_kernel(cell: nn.Module) -> bool:
    """Whether ``cell`` runs through a kernel: its exact type has one registered."""
    return type(cell) in KERNELS
