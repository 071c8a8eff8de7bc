"""Cells: one step of a recurrence. See ``base.Cell`` for the contract."""

from rnnkit.cells.base import Cell, State
from rnnkit.cells.elman import ElmanCell
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.jordan import JordanCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.cells.minimal_gru import MinimalGRUCell

__all__ = ["Cell", "State", "ElmanCell", "GRUCell", "JordanCell", "LSTMCell", "MinimalGRUCell"]
