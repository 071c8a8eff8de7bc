"""Inference over a padded batch with lengths in one call of torch's packed GRU or LSTM op.

With gradients off, a ``Stacked`` of plain GRU (``reset_after``, torch's convention) or plain
LSTM layers, unidirectional or ``Bidirectional``, computes exactly torch.nn.GRU's / LSTM's
function on a packed batch: each sequence runs over its own length, the reverse direction from
its last real step, padding outputs are 0 and the final states are those at each sequence's
end. ``packed_stack`` makes that one call (``torch._VF.gru`` / ``lstm`` on the packed data) with
every layer's weights, which skips the padding positions the masked kernels step through and
the per-layer, per-direction calls (benchmarks/packed_inference.py measures it). Training keeps
the hand-derived kernels. The ``"packed"`` backend switch
(``rnnkit.kernels.backends``): ``"auto"`` takes this path where ``applies``, ``"off"`` never.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells.base import State
from rnnkit.cells.gru import GRUCell
from rnnkit.cells.lstm import LSTMCell
from rnnkit.kernels.backends import get_backend
from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.recurrent import Recurrent, check_state


def _directions(layer: nn.Module) -> list[nn.Module] | None:
    """A layer's ``Recurrent`` modules (one, or two for a ``Bidirectional``), else None."""
    if type(layer) is Recurrent:
        return [layer]
    if type(layer) is Bidirectional:
        parts = [layer.forward_layer, layer.backward_layer]
        return parts if all(type(p) is Recurrent for p in parts) else None
    return None


def _plain(cell: nn.Module) -> bool:
    if type(cell) is GRUCell:
        return cell.reset_after
    return type(cell) is LSTMCell and not cell.peephole and not cell.layer_norm


def applies(stack: nn.Module, xs: Tensor, lengths: Tensor | None) -> bool:
    """Whether ``stack`` (a ``Stacked``) runs ``packed_stack`` on ``xs`` with ``lengths``:
    gradients off, lengths given and all ≥ 1, no residual connections, no dropout between
    layers in training mode, every layer a
    ``Recurrent`` (or two in a ``Bidirectional``) using its kernel, without hooks, all of one
    plain cell type with biases alike, and the switch not "off"."""
    if torch.is_grad_enabled() or lengths is None or get_backend("packed") == "off":
        return False
    if stack.residual or (stack.dropout and stack.training):
        return False
    if len(lengths) == 0 or int(lengths.min()) < 1:
        return False
    dirs = [_directions(layer) for layer in stack.layers]
    if any(d is None for d in dirs) or len({len(d) for d in dirs}) != 1:
        return False
    modules = [r for d in dirs for r in d] + list(stack.layers)
    if any(m._forward_hooks or m._forward_pre_hooks for m in modules):
        return False
    recs = [r for d in dirs for r in d]
    cells = [r.cell for r in recs]
    return (
        all(r.use_kernel for r in recs)
        and all(_plain(c) for c in cells)
        and len({type(c) for c in cells}) == 1
        and len({c.bias_ih is None for c in cells}) == 1
        and len({c.hidden_size for c in cells}) == 1
    )


def packed_stack(
    stack: nn.Module, xs: Tensor, states: Sequence[State | None], lengths: Tensor
) -> tuple[Tensor, list[State]]:
    """``stack``'s layers over xs (T, B, I) with ``lengths`` as torch's one packed call
    (``applies``): (outputs (T, B, D·H), the final state of each layer as the layers give it)."""
    T, B = xs.shape[:2]
    dirs = [_directions(layer) for layer in stack.layers]
    D, lstm = len(dirs[0]), type(dirs[0][0].cell) is LSTMCell
    params, h0, c0 = [], [], []
    for d, state in zip(dirs, states, strict=True):
        for k, rec in enumerate(d):
            cell = rec.cell
            s = None if state is None else (state[k] if D == 2 else state)
            if s is None:
                s = cell.init_state(B, device=xs.device, dtype=xs.dtype)
            else:
                check_state(cell, s, B)
            h0.append(s[0] if lstm else s)
            if lstm:
                c0.append(s[1])
            params += [cell.weight_ih, cell.weight_hh]
            if cell.bias_ih is not None:
                params += [cell.bias_ih, cell.bias_hh]
    bias = dirs[0][0].cell.bias_ih is not None
    packed = pack_padded_sequence(xs, lengths.cpu(), enforce_sorted=False)
    order = packed.sorted_indices
    hx = torch.stack(h0).index_select(1, order)
    args = (packed.data, packed.batch_sizes)
    flags = (bias, len(dirs), 0.0, False, D == 2)
    if lstm:
        cx = torch.stack(c0).index_select(1, order)
        out, h, c = torch._VF.lstm(*args, (hx, cx), params, *flags)
        c = c.index_select(1, packed.unsorted_indices)
    else:
        out, h = torch._VF.gru(*args, hx, params, *flags)
    h = h.index_select(1, packed.unsorted_indices)
    ys = PackedSequence(out, packed.batch_sizes, order, packed.unsorted_indices)
    ys = pad_packed_sequence(ys, total_length=T)[0]
    finals = []
    for l in range(len(dirs)):
        parts = [(h[l * D + k], c[l * D + k]) if lstm else h[l * D + k] for k in range(D)]
        finals.append(tuple(parts) if D == 2 else parts[0])
    return ys, finals
