"""The cells by name and what each supports: the one list of cell names.

Configurations, commands and layers derive theirs from ``REGISTRY`` (the torch-compatible layer
of each name is ``rnnkit.layers.torch_compat.BY_NAME``); ``cell_names(...)`` selects by what
the cells support, e.g. ``cell_names(chrono_init=True)`` -> ("lstm", "gru", "mingru").
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from rnnkit.cells.base import ACTIVATIONS, Cell
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.jordan import OUTPUT_ACTIVATIONS, JordanCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.minimal_gru import MinimalGRUCell


@dataclass(frozen=True)
class CellInfo:
    """One cell: its class and the options it supports (False / () where it has none)."""

    cls: type[Cell]
    gates: int = 1  # G: weight_ih is (G·H, I), weight_hh (G·H, H) (Jordan's weight_yh (H, O))
    cell_state: bool = False  # a memory cell beside h: the state is (h, c)
    output_projection: bool = False  # y is its own projection of h (output_size), not h
    nonlinearities: tuple[str, ...] = ()  # the choices of ``nonlinearity`` (hidden layer)
    output_nonlinearities: tuple[str, ...] = ()  # the choices of ``output_nonlinearity``
    peephole: bool = False  # ``peephole=True``: the gates see the memory cell
    layer_norm: bool = False  # ``layer_norm=True``: Ba et al. 2016
    forget_bias: bool = False  # ``forget_bias=b``: the forget gate's initial bias
    reset_after: bool = False  # ``reset_after``: the GRU's two reset conventions
    chrono_init: bool = False  # gated: ``rnnkit.layers.initialisation.chrono_init_`` applies


REGISTRY: dict[str, CellInfo] = {
    "lstm": CellInfo(
        LSTMCell,
        gates=4,
        cell_state=True,
        peephole=True,
        layer_norm=True,
        forget_bias=True,
        chrono_init=True,
    ),
    "gru": CellInfo(GRUCell, gates=3, reset_after=True, chrono_init=True),
    "mingru": CellInfo(MinimalGRUCell, gates=2, chrono_init=True),
    "elman": CellInfo(ElmanCell, nonlinearities=tuple(ACTIVATIONS)),
    "jordan": CellInfo(
        JordanCell,
        output_projection=True,
        nonlinearities=tuple(ACTIVATIONS),
        output_nonlinearities=tuple(OUTPUT_ACTIVATIONS),
    ),
}
"""Every built-in cell by the short name that configurations and commands use."""

_CAPABILITIES = {f.name for f in fields(CellInfo)} - {"cls", "gates"}


def cell_names(**supports: bool) -> tuple[str, ...]:
    """The names of the cells whose capabilities have the given truth values, in registry
    order: ``cell_names()`` all of them, ``cell_names(output_projection=False)`` those whose
    output is the hidden state (all but Jordan's)."""
    unknown = set(supports) - _CAPABILITIES
    if unknown:
        raise TypeError(f"unknown cell capabilities {sorted(unknown)}: {sorted(_CAPABILITIES)}")
    return tuple(
        name
        for name, info in REGISTRY.items()
        if all(bool(getattr(info, key)) == want for key, want in supports.items())
    )


def cell_name(cell: object) -> str | None:
    """The registry name of ``cell``'s exact type (None for any other cell, a subclass too)."""
    for name, info in REGISTRY.items():
        if type(cell) is info.cls:
            return name
    return None
