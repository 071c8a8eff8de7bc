"""Recurrent layers as ONNX ``Scan`` loops, so that a whole-sequence graph keeps a dynamic length.

Tracing a time loop unrolls it into as many steps as the example had. Instead, while a model is
exported under ``scan_recurrences()``, every ``Recurrent`` emits one placeholder node
(``rnnkit::Recurrence``) in place of its loop; ``replace_recurrences`` then swaps each
placeholder for an ONNX ``Scan`` whose body is the cell's own step, traced once from its plain
forward (the generic path, never a kernel):

    body(state..., x_t, m_t) = (where(m_t, state', state)..., where(m_t, y_t, 0)),
    (y_t, state') = cell(x_t, state)

with m_t (B, 1) the mask ``t < lengths`` (all true without lengths), so the final state is each
sequence's state after its own last step, as ``Recurrent`` defines it. ``reverse=True`` flips the
valid prefix of each sequence before and after the loop (``flip_sequences``), as ``Recurrent``
does. A cell whose step cannot be traced into ONNX raises ``ExportError`` naming it.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import onnx
import torch
from onnx import helper
from torch import Tensor, nn

from rnnkit.cells.base import State
from rnnkit.errors import UserError
from rnnkit.kernels.backends import set_backend
from rnnkit.kernels.generic import generic
from rnnkit.layers.recurrent import Recurrent, check_lengths, flip_sequences, length_mask

OPSET = 17
DOMAIN = "rnnkit"


class ExportError(UserError):
    """A model that cannot be exported, with the reason in one line."""


def onnx_export(
    module: nn.Module,
    args: tuple,
    names: tuple[list[str], list[str]],
    axes: dict,
    what: str = "the model",
    placeholders: bool = False,
) -> onnx.ModelProto:
    """``module(*args)`` traced into an ONNX ModelProto by torch's TorchScript-based exporter
    (torch's dynamo exporter takes tens of seconds a graph, this one about one; its deprecation
    warning and the tracer's warnings are silenced). ExportError names ``what`` failed, and why.
    ``placeholders``: the graph may hold ``rnnkit::Recurrence`` nodes (``scan_recurrences``).
    """
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                module,
                args,
                buffer,
                dynamo=False,
                opset_version=OPSET,
                input_names=names[0],
                output_names=names[1],
                dynamic_axes=axes,
                custom_opsets={DOMAIN: 1} if placeholders else None,
            )
        except Exception as e:  # the exporter's errors are many kinds; keep the first line
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(f"cannot export {what} to ONNX: {reason}") from None
    return onnx.load_from_string(buffer.getvalue())


class _Step(nn.Module):
    """The Scan body as a module: (state..., x, m) -> (state'..., y), masked."""

    def __init__(self, cell: nn.Module, n_state: int) -> None:
        super().__init__()
        self.cell, self.n_state = cell, n_state

    def forward(self, *args: Tensor) -> tuple[Tensor, ...]:
        state, x, m = args[: self.n_state], args[-2], args[-1]
        y, new = self.cell(x, state if self.n_state > 1 else state[0])
        new = new if isinstance(new, tuple) else (new,)
        new = tuple(torch.where(m, n, o) for n, o in zip(new, state, strict=True))
        return (*new, torch.where(m, y, torch.zeros_like(y)))


class _Recurrence(torch.autograd.Function):
    """The placeholder: forward runs the generic path, the ONNX symbolic emits one node."""

    @staticmethod
    def forward(ctx, key: int, xs: Tensor, mask: Tensor, *state: Tensor):
        cell = _ACTIVE[key]
        tracing = torch._C._get_tracing_state()  # the loop inside is not part of the trace:
        torch._C._set_tracing_state(None)  # its parameters are no inputs of the node
        try:
            ys, new = generic(cell, xs, state if len(state) > 1 else state[0], mask)
        finally:
            torch._C._set_tracing_state(tracing)
        return (ys, *(new if isinstance(new, tuple) else (new,)))

    @staticmethod
    def symbolic(g, key: int, xs, mask, *state):
        outs = g.op(f"{DOMAIN}::Recurrence", xs, mask, *state, key_i=key, outputs=1 + len(state))
        # the types of the outputs, which torch cannot infer for a node it does not know
        outs[0].setType(xs.type().with_sizes([None, None, _ACTIVE[key].output_size]))
        for out, s in zip(outs[1:], state, strict=True):
            out.setType(s.type())
        return outs


_ACTIVE: dict[int, nn.Module] = {}  # the cells of the export under way, by placeholder key


def _zeros_like_batch(xs: Tensor, width: int) -> Tensor:
    """Zeros (B, width) whose B follows xs (T, B, ·) in the traced graph (not a constant)."""
    return xs[0, :, :1].mul(0).expand(-1, width)


def _scan_forward(
    self: Recurrent,
    xs: Tensor,
    state: State | None = None,
    *,
    lengths: Tensor | None = None,
    reverse: bool = False,
) -> tuple[Tensor, State]:
    """``Recurrent.forward`` while exporting: the placeholder in place of the loop."""
    T, B = xs.shape[:2]
    lengths = check_lengths(lengths, T, B, xs.device)
    if state is None:
        sizes = self.cell.state_sizes
        zeros = tuple(_zeros_like_batch(xs, n) for n in sizes)
        state = zeros if len(zeros) > 1 else zeros[0]
    parts = state if isinstance(state, tuple) else (state,)
    if reverse:
        xs = flip_sequences(xs, lengths)
    if lengths is None:
        mask = xs[:, :, :1] == xs[:, :, :1]  # all true, (T, B, 1); NaN inputs aside
    else:
        mask = length_mask(lengths, T)
    key = len(_ACTIVE)
    _ACTIVE[key] = self.cell
    ys, *new = _Recurrence.apply(key, xs, mask, *parts)
    if reverse:
        ys = flip_sequences(ys, lengths)
    return ys, tuple(new) if len(new) > 1 else new[0]


@contextlib.contextmanager
def scan_recurrences():
    """Within: every ``Recurrent`` emits a placeholder node, the cells are kept by key, and the
    one-step fast path is off; yields the dict of cells by key (for ``replace_recurrences``)."""
    _ACTIVE.clear()
    original = Recurrent.forward
    Recurrent.forward = _scan_forward
    try:
        with set_backend("step", "off"):
            yield _ACTIVE
    finally:
        Recurrent.forward = original


def cell_body(cell: nn.Module, key: int) -> onnx.GraphProto:
    """The Scan body for ``cell``: its step traced once (in the dtype of its parameters), every
    name prefixed with ``r{key}/`` so that none shadows a name of the outer graph."""
    missing = [a for a in ("input_size", "output_size", "state_sizes") if not hasattr(cell, a)]
    if missing:  # the example step needs the sizes that rnnkit.cells.Cell declares
        raise ExportError(
            f"cannot export cell {type(cell).__name__}: it has no {', '.join(missing)} "
            "(the sizes every rnnkit.cells.Cell declares)"
        )
    sizes = tuple(cell.state_sizes)
    dtype = next(cell.parameters(), torch.zeros(())).dtype
    B = 2
    state = tuple(torch.zeros(B, n, dtype=dtype) for n in sizes)
    x = torch.zeros(B, cell.input_size, dtype=dtype)
    m = torch.ones(B, 1, dtype=torch.bool)
    ins = [f"s{i}" for i in range(len(sizes))] + ["x", "m"]
    outs = [f"s{i}_out" for i in range(len(sizes))] + ["y"]
    axes = {n: {0: "batch"} for n in ins + outs}
    model = onnx_export(
        _Step(cell, len(sizes)), (*state, x, m), (ins, outs), axes, f"cell {type(cell).__name__}"
    )
    body = model.graph
    prefix = f"r{key}/"
    rename = {}
    for v in [*body.input, *body.output, *body.initializer]:
        rename[v.name] = prefix + v.name
    for node in body.node:
        for name in [*node.input, *node.output]:
            if name:
                rename.setdefault(name, prefix + name)
    for v in [*body.input, *body.output, *body.initializer, *body.value_info]:
        v.name = rename.get(v.name, v.name)
    for node in body.node:
        node.name = prefix + node.name
        node.input[:] = [rename.get(n, n) if n else n for n in node.input]
        node.output[:] = [rename.get(n, n) for n in node.output]
    body.name = f"recurrence_{key}"
    return body


def replace_recurrences(model: onnx.ModelProto, cells: dict[int, nn.Module]) -> onnx.ModelProto:
    """Every ``rnnkit::Recurrence`` placeholder of ``model`` becomes an ONNX ``Scan``."""
    graph = model.graph
    nodes = []
    for node in graph.node:
        if node.domain != DOMAIN:
            nodes.append(node)
            continue
        key = next(a.i for a in node.attribute if a.name == "key")
        xs, mask, *state = node.input
        ys, *new = node.output
        body = cell_body(cells[key], key)
        nodes.append(
            helper.make_node(
                "Scan",
                [*state, xs, mask],
                [*new, ys],
                name=f"recurrence_{key}",
                body=body,
                num_scan_inputs=2,
            )
        )
    del graph.node[:]
    graph.node.extend(nodes)
    del model.opset_import[:]
    model.opset_import.extend([helper.make_opsetid("", OPSET)])
    onnx.checker.check_model(model)
    return model
