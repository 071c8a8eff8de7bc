"""Cells: one step of a recurrence. See ``base.Cell`` for the contract and ``registry`` for the
cells by name and what each supports."""

from rnnkit.cells.base import Cell, State
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.jordan import JordanCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.minimal_gru import MinimalGRUCell
from rnnkit.cells.registry import REGISTRY, CellInfo, cell_name, cell_names

__all__ = [
    "Cell",
    "State",
    "ElmanCell",
    "GRUCell",
    "JordanCell",
    "LSTMCell",
    "MinimalGRUCell",
    "REGISTRY",
    "CellInfo",
    "cell_name",
    "cell_names",
]
