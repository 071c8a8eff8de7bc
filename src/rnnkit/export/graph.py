"""One exported graph: a module traced into ONNX, with its inputs, outputs and dynamic axes.

``export_graph`` traces a module with torch's TorchScript-based exporter; with ``loops=True``
every recurrent layer inside becomes an ONNX ``Scan`` loop (``rnnkit.export.scan``), so that the
graph runs at any sequence length, not only the example's.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import torch
from torch import nn

from rnnkit.cells.registry import cell_name
from rnnkit.export.scan import cell_body, onnx_export, replace_recurrences, scan_recurrences
from rnnkit.kernels.backends import set_backend
from rnnkit.layers.recurrent import Recurrent


@dataclass
class Graph:
    """One exported graph and the names and dynamic axes of its inputs and outputs."""

    proto: onnx.ModelProto
    inputs: list[str]
    outputs: list[str]
    axes: dict[str, dict[int, str]]


def check_cells(model: nn.Module) -> None:
    """Every cell of ``model`` that is not a built-in one (by exact type) traced alone first, so
    that one ONNX cannot express fails in one line naming the cell and the reason."""
    for module in model.modules():
        cells = [module.cell] if isinstance(module, Recurrent) else []
        cells += getattr(module, "_cells", [])  # the torch-compatible layers' cells
        for cell in cells:
            if cell_name(cell) is None:
                cell_body(cell, 0)


def export_graph(
    module: nn.Module,
    args: tuple,
    inputs: list[str],
    outputs: list[str],
    axes: dict[str, dict[int, str]],
    *,
    loops: bool,
) -> Graph:
    """``module(*args)`` in eval mode (it is left in eval mode) as an ONNX graph; ``loops``:
    recurrent layers become ``Scan`` loops (a whole sequence of any length), else they run as
    the single step they are given."""
    check_cells(module)
    module.eval()
    # the layers as Recurrent modules (their loops), not as torch's packed call
    with torch.no_grad(), set_backend("step", "off"), set_backend("packed", "off"):
        if loops:
            with scan_recurrences() as cells:
                proto = onnx_export(module, args, (inputs, outputs), axes, placeholders=True)
            proto = replace_recurrences(proto, cells)
        else:
            proto = onnx_export(module, args, (inputs, outputs), axes)
    return Graph(proto, inputs, outputs, axes)


def state_names(n: int) -> list[str]:
    """The names of a layer's state tensors: h, or h and c (the LSTM's)."""
    return ["h", "c"][:n] if n <= 2 else [f"state{i}" for i in range(n)]
