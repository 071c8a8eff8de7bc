"""Sequence layers: Recurrent (the time loop), Stacked, Bidirectional, and the torch twins."""

from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.recurrent import Recurrent, flip_sequences, length_mask
from rnnkit.layers.stacked import Stacked
from rnnkit.layers.torch_compat import GRU, LSTM, RNN, JordanRNN, MinimalGRU, RecurrentLayer

__all__ = [
    "Recurrent",
    "Stacked",
    "Bidirectional",
    "RecurrentLayer",
    "RNN",
    "LSTM",
    "GRU",
    "MinimalGRU",
    "JordanRNN",
    "flip_sequences",
    "length_mask",
]
