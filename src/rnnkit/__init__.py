"""rnnkit: recurrent neural networks on PyTorch, with backpropagation through time by hand.

Layers (drop-in twins of torch.nn where one exists): RNN, LSTM, GRU, MinimalGRU, JordanRNN.
Building blocks: cells (one step), Recurrent (the time loop), Stacked, Bidirectional.
"""

from rnnkit.cells import Cell, ElmanCell, GRUCell, JordanCell, LSTMCell, MinimalGRUCell, State
from rnnkit.denormals import flush_denormals, flushed
from rnnkit.diagnostics import gradient_norms, jacobian_product
from rnnkit.layers import (
    GRU,
    LSTM,
    RNN,
    Bidirectional,
    JordanRNN,
    MinimalGRU,
    Recurrent,
    Stacked,
)
from rnnkit.layers.initialisation import chrono_init_
from rnnkit.train.bptt import detach_state, truncated_bptt
from rnnkit.version import package_version

__version__ = package_version()

__all__ = [
    "RNN",
    "LSTM",
    "GRU",
    "MinimalGRU",
    "JordanRNN",
    "Recurrent",
    "Stacked",
    "Bidirectional",
    "Cell",
    "State",
    "ElmanCell",
    "JordanCell",
    "LSTMCell",
    "GRUCell",
    "MinimalGRUCell",
    "detach_state",
    "truncated_bptt",
    "gradient_norms",
    "jacobian_product",
    "chrono_init_",
    "flush_denormals",
    "flushed",
]
