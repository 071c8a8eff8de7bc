"""Initialisations of recurrent layers beyond torch's uniform one.

``chrono_init_`` (Tallec & Ollivier 2018, "Can recurrent neural networks warp time?"): a gated
cell that keeps a fraction g of its state per step forgets over about 1/(1 - g) steps; drawing
the keep gates' biases so that these characteristic times spread uniformly over [2, T_max]
lets the cell carry information over up to T_max steps from the first update, where torch's
uniform initialisation (a keep gate near 0.5) forgets within a few steps. For the LSTM:

    b_f = log(u),  b_i = -log(u),  u ~ U[1, T_max - 1]     (so 1 / (1 - σ(b_f)) = 1 + u)

and for the GRUs the same for their keep gate (torch's GRU keeps z h_{t-1}: b_z = log(u); the
minimal GRU writes with u_t: b_u = -log(u)). The biases land in ``bias_ih``; the matching part
of ``bias_hh`` is zeroed. It applies in place to rnnkit's torch-compatible LSTM (peephole too),
GRU and MinimalGRU and to ``torch.nn.LSTM``/``GRU``, every layer and direction.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from rnnkit.errors import UserError
from rnnkit.layers import torch_compat as tc

KEEP_GATES = {"lstm": (1, 1.0), "gru": (1, 1.0), "mingru": (0, -1.0)}
"""For each gated cell (``rnnkit.cells.cell_names(chrono_init=True)``): the chunk of the gate
biases, in torch's layout, of the gate that keeps the state, and the sign of log(u) there."""


def _gated_cell_name(layer: nn.Module) -> str:
    """The cell name (``rnnkit.cells.REGISTRY``) of a gated layer, rnnkit's or torch.nn's."""
    if isinstance(layer, (nn.LSTM, tc.LSTM)):
        return "lstm"
    if isinstance(layer, (nn.GRU, tc.GRU)):
        return "gru"
    if isinstance(layer, tc.MinimalGRU):
        return "mingru"
    raise UserError(
        f"chrono initialisation needs a gated layer (LSTM, GRU, MinimalGRU), "
        f"not {type(layer).__name__}"
    )


def chrono_init_(layer: nn.Module, t_max: float, generator: torch.Generator | None = None):
    """Chrono-initialise ``layer``'s gate biases in place for dependencies of up to ``t_max``
    steps (see the module docstring); returns ``layer``.

    Args:
        layer: an LSTM, GRU or MinimalGRU layer (rnnkit's or torch.nn's) with biases.
        t_max: the longest dependency expected, >= 2 (e.g. the sequence length).
        generator: the random source for u (default: torch's global one).
    """
    name = _gated_cell_name(layer)
    if not (isinstance(t_max, (int, float)) and math.isfinite(t_max) and t_max >= 2):
        raise UserError(f"chrono initialisation: T_max must be a number >= 2, got {t_max!r}")
    if not getattr(layer, "bias", True):
        raise UserError("chrono initialisation sets gate biases: the layer has bias=False")
    H = layer.hidden_size
    chunk, sign = KEEP_GATES[name]
    suffixes = [""] + (["_reverse"] if getattr(layer, "bidirectional", False) else [])
    with torch.no_grad():
        for index in range(layer.num_layers):
            for suffix in suffixes:
                b_ih = getattr(layer, f"bias_ih_l{index}{suffix}")
                b_hh = getattr(layer, f"bias_hh_l{index}{suffix}")
                u = torch.empty(H, dtype=torch.float64)
                log_u = u.uniform_(1.0, t_max - 1, generator=generator).log().to(b_ih.dtype)
                b_ih[chunk * H : (chunk + 1) * H] = sign * log_u
                b_hh[chunk * H : (chunk + 1) * H] = 0.0
                if name == "lstm":  # the input gate opens as much as the forget gate keeps
                    b_ih[:H] = -log_u
                    b_hh[:H] = 0.0
    return layer
