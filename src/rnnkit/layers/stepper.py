"""One step of a stacked torch-compatible layer without autograd: the sampler's hot loop.

Sampling a character at a time calls the layer with T = 1 and batch 1 for every character. The
work is then a few matrix-vector products that read every weight once, and the time goes to the
framework: torch.nn.LSTM re-lays its weights out for oneDNN on every call, and a chain of small
torch operations costs a few microseconds each. This module takes that call when autograd
records nothing (``torch.no_grad()`` or no input needs a gradient) and does, per layer:

- one matrix-vector product over ``[W_ih | W_hh] [x; h]`` with the two weights concatenated
  once and cached (``WeightCache``: rebuilt when a parameter changes, so after an optimiser
  step or ``load_state_dict``); the GRU keeps its two products;
- the gate arithmetic in place on one buffer, in the layout (gates, batch) so every gate is a
  contiguous block of rows.

Two backends run the same code: ``torch`` (any device) and, on the CPU, ``numpy``, whose
matrix-vector product (OpenBLAS) and element-wise calls cost less per call than torch's at this
size; "auto" takes numpy on the CPU only while torch runs one intra-op thread (beside torch's
spinning team, numpy's own BLAS threads fight it for the cores). Where "auto" would take the
torch backend for a GRU (reset after) or a tanh or ReLU Elman stack, it calls torch's own RNN op
over the stack instead (``rnnkit.layers.step_op``), which is faster there. The "step" switch of
``rnnkit.kernels.backends`` chooses: ``set_backend("step", "auto" | "numpy" | "torch" |
"off")``; "off" takes the generic path (the cell's forward). ``set_step_backend(name)`` is its
former name. Every backend is tested equal to the generic path.

Taken only when the result is the same function as the layer's: T = 1, no ``lengths`` or
PackedSequence, one direction, no residual connections, no active dropout, and a cell (by its
exact type) that ``STEPS`` knows: Elman RNN, LSTM with or without peepholes, GRU either reset
convention, minimal GRU. Anything else (layer-normalised LSTM, Jordan, bidirectional, a
subclass of a cell) goes the usual way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from rnnkit.cells.registry import cell_name
from rnnkit.kernels.backends import OPTIONS, get_backend, set_backend
from rnnkit.layers.step_op import op_step, stack_op

BACKENDS = OPTIONS["step"]
"""The values of the "step" switch of ``rnnkit.kernels.backends``."""


def set_step_backend(name: str) -> set_backend:
    """``set_backend("step", name)`` (``rnnkit.kernels.backends``), under its former name."""
    return set_backend("step", name)


def __getattr__(name: str):
    if name == "BACKEND":  # the former module attribute: the "step" switch's value
        return get_backend("step")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _TorchOps:
    """In-place element-wise operations on torch tensors (layout: rows = gates, columns = batch)."""

    name = "torch"

    @staticmethod
    def array(t: Tensor) -> Tensor:
        return t

    @staticmethod
    def tensor(a: Tensor) -> Tensor:
        return a.contiguous()

    @staticmethod
    def mm(w: Tensor, x: Tensor) -> Tensor:
        return torch.mm(w, x)

    @staticmethod
    def cat(a: Tensor, b: Tensor) -> Tensor:
        return torch.cat((a, b))

    @staticmethod
    def stack(parts: list[Tensor]) -> Tensor:
        return torch.stack(parts)

    @staticmethod
    def sigmoid_(a: Tensor) -> None:
        a.sigmoid_()

    @staticmethod
    def tanh_(a: Tensor) -> None:
        a.tanh_()

    @staticmethod
    def relu_(a: Tensor) -> None:
        a.relu_()

    @staticmethod
    def tanh(a: Tensor) -> Tensor:
        return a.tanh()


class _NumpyOps:
    """The same operations on numpy views of CPU tensors (no copies of the weights)."""

    name = "numpy"

    @staticmethod
    def array(t: Tensor) -> np.ndarray:
        return t.detach().numpy()

    @staticmethod
    def tensor(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    @staticmethod
    def mm(w: np.ndarray, x: np.ndarray) -> np.ndarray:
        return w @ x

    @staticmethod
    def cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.concatenate((a, b))

    @staticmethod
    def stack(parts: list[np.ndarray]) -> np.ndarray:
        return np.stack(parts)

    @staticmethod
    def sigmoid_(a: np.ndarray) -> None:  # sigmoid(x) = (1 + tanh(x / 2)) / 2
        a *= 0.5
        np.tanh(a, out=a)
        a *= 0.5
        a += 0.5

    @staticmethod
    def tanh_(a: np.ndarray) -> None:
        np.tanh(a, out=a)

    @staticmethod
    def relu_(a: np.ndarray) -> None:
        np.maximum(a, 0, out=a)

    @staticmethod
    def tanh(a: np.ndarray) -> np.ndarray:
        return np.tanh(a)


OPS = {"torch": _TorchOps, "numpy": _NumpyOps}


# ---- one layer's step, written once for both backends -----------------------------------------
# Shapes: x (I, B), h and c (H, B); weights (G, K) as stored; biases (G, 1) or None.
def _affine(ops, w, x, b):
    g = ops.mm(w, x)
    if b is not None:
        g += b
    return g


def _elman(ops, p: dict, x, state):
    (h,) = state
    g = _affine(ops, p["w"], ops.cat(x, h), p["b"])
    p["act"](ops, g)
    return (g,)


def _activate(name: str):
    def act(ops, g) -> None:
        if name == "tanh":
            ops.tanh_(g)
        elif name == "relu":
            ops.relu_(g)
        elif name == "sigmoid":
            ops.sigmoid_(g)
        # identity: nothing to do

    return act


def _lstm(ops, p: dict, x, state):
    # the cached weights hold the gate rows in the order i, f, o, g: one sigmoid call covers i, f, o
    h, c = state
    H = h.shape[0]
    g = _affine(ops, p["w"], ops.cat(x, h), p["b"])
    i, f, o, gg = g[:H], g[H : 2 * H], g[2 * H : 3 * H], g[3 * H :]
    if p["peephole"]:  # i, f see c_{t-1}; o sees c_t, so it waits for the new cell
        i += p["w_ci"] * c
        f += p["w_cf"] * c
        ops.sigmoid_(g[: 2 * H])
    else:
        ops.sigmoid_(g[: 3 * H])
    ops.tanh_(gg)
    c = f * c
    c += i * gg
    if p["peephole"]:
        o += p["w_co"] * c
        ops.sigmoid_(o)
    return o * ops.tanh(c), c


def _gru(ops, p: dict, x, state):
    (h,) = state
    H = h.shape[0]
    gi = _affine(ops, p["w_ih"], x, p["b_ih"])
    if p["reset_after"]:  # n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
        gh = _affine(ops, p["w_hh"], h, p["b_hh"])
        rz = gi[: 2 * H]
        rz += gh[: 2 * H]
        ops.sigmoid_(rz)
        n = gi[2 * H :]
        n += rz[:H] * gh[2 * H :]
    else:  # n = tanh(W_in x + b_in + W_hn (r * h) + b_hn)
        rz = gi[: 2 * H]
        rz += _affine(ops, p["w_hrz"], h, p["b_hrz"])
        ops.sigmoid_(rz)
        n = gi[2 * H :]
        n += _affine(ops, p["w_hn"], rz[:H] * h, p["b_hn"])
    ops.tanh_(n)
    z = rz[H:]
    return (n + z * (h - n),)  # (1 - z) n + z h


def _minimal_gru(ops, p: dict, x, state):
    (c,) = state
    H = c.shape[0]
    g = _affine(ops, p["w"], ops.cat(x, c), p["b"])
    u, candidate = g[:H], g[H:]
    ops.sigmoid_(u)
    ops.tanh_(candidate)
    return (c + u * (candidate - c),)  # u c~ + (1 - u) c


# ---- which layers, and their cached weights ------------------------------------------------
STEPS = {"elman": _elman, "lstm": _lstm, "gru": _gru, "mingru": _minimal_gru}
"""The one-step functions by cell name (``rnnkit.cells.REGISTRY``)."""


def _steppable_cell(layer) -> str | None:
    """The name of the layer's cell if ``STEPS`` runs it, by its exact type, else None."""
    cell = layer._cells[0]
    name = cell_name(cell)
    if name not in STEPS or getattr(cell, "layer_norm", False):
        return None
    return name


def _column(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.detach().unsqueeze(1)


def _sum(a: Tensor | None, b: Tensor | None) -> Tensor | None:
    if a is None or b is None:
        return a if b is None else b
    return a + b


def _layer_weights(layer, name: str, l: int) -> dict[str, Any]:
    """One layer's weights as the step functions want them (torch tensors, detached)."""
    get = lambda stem: getattr(layer, f"{stem}_l{l}", None)  # noqa: E731
    w_ih, w_hh, b_ih, b_hh = (get(n) for n in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
    w_ih, w_hh = w_ih.detach(), w_hh.detach()
    cell = layer._cells[l]
    if name == "gru":
        H = cell.hidden_size
        p = {"reset_after": cell.reset_after, "w_ih": w_ih, "b_ih": _column(b_ih)}
        if cell.reset_after:
            p.update(w_hh=w_hh, b_hh=_column(b_hh))
        else:
            b_hh = _column(b_hh)
            p.update(w_hrz=w_hh[: 2 * H], w_hn=w_hh[2 * H :])
            p.update(b_hrz=None if b_hh is None else b_hh[: 2 * H])
            p.update(b_hn=None if b_hh is None else b_hh[2 * H :])
        return p
    p = {"w": torch.cat((w_ih, w_hh), 1), "b": _column(_sum(b_ih, b_hh))}
    if name == "lstm":  # rows i, f, g, o -> i, f, o, g
        H = cell.hidden_size
        order = torch.cat(
            [torch.arange(2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)]
        )
        p = {k: None if v is None else v[order].contiguous() for k, v in p.items()}
        p["peephole"] = cell.peephole
        if cell.peephole:
            for key in ("w_ci", "w_cf", "w_co"):
                p[key] = _column(get(key.replace("w_", "weight_")))
    elif name == "elman":
        p["act"] = _activate(cell.nonlinearity)
    return p


def _cell_and_parameter_names(layer) -> tuple[str | None, tuple[str, ...]]:
    """What never changes after construction, kept on the layer: the name of the cell this path
    steps (None: it steps none) and the names of the layer's parameters."""
    cached = layer.__dict__.get("_step_cell_and_names")
    if cached is None:
        ok = not layer.bidirectional and not layer.residual
        cached = (_steppable_cell(layer) if ok else None, tuple(top for _, _, top in layer._links))
        layer.__dict__["_step_cell_and_names"] = cached
    return cached


class WeightCache:
    """One layer's weights in a backend's arrays (``_layer_weights`` per layer), rebuilt when
    the backend changes or any parameter does: a different tensor, new storage, or an in-place
    update (which bumps the tensor's version counter: an optimiser step, ``load_state_dict``)."""

    def __init__(self) -> None:
        self.key: tuple | None = None
        self.weights: tuple[tuple[torch.dtype, torch.device], list[dict]] | None = None

    @staticmethod
    def key_of(ops, params: list[Tensor]) -> tuple:
        return (ops.name, *((id(p), p.data_ptr(), p._version) for p in params))

    def get(self, layer, name: str, ops, params: list[Tensor]):
        """((dtype, device), per-layer weights), or None when the parameters do not share one
        dtype and device."""
        key = self.key_of(ops, params)
        if key == self.key:
            return self.weights
        dtype, device = params[0].dtype, params[0].device
        if any(p.dtype != dtype or p.device != device for p in params):
            return None
        per_layer = []
        for l in range(layer.num_layers):
            weights = _layer_weights(layer, name, l)
            per_layer.append(
                {k: ops.array(v) if isinstance(v, Tensor) else v for k, v in weights.items()}
            )
        self.key, self.weights = key, ((dtype, device), per_layer)
        return self.weights


def _backend(x: Tensor) -> str:
    backend = get_backend("step")
    if backend != "auto":
        return backend
    numpy_ok = x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
    # With more than one intra-op thread, torch's team spins between calls on the cores that
    # numpy's BLAS threads want (docs/speed.md#issue-17s-targets-on-an-intel-xeon).
    return "numpy" if numpy_ok and torch.get_num_threads() == 1 else "torch"


def try_step(layer, input: Any, hx: Any) -> tuple[Tensor, Any] | None:
    """The layer's output for ``input`` if this fast path applies, else None (see module doc)."""
    if get_backend("step") == "off" or not isinstance(input, Tensor) or input.dim() not in (2, 3):
        return None
    name, names = _cell_and_parameter_names(layer)
    if name is None:
        return None
    batched = input.dim() == 3
    T = input.shape[1] if batched and layer.batch_first else input.shape[0]
    if T != 1 or input.shape[-1] != layer.input_size:
        return None
    if layer.training and layer.dropout > 0 and layer.num_layers > 1:
        return None
    params = [getattr(layer, name) for name in names]
    hx_parts = () if hx is None else (hx if isinstance(hx, tuple) else (hx,))
    if torch.is_grad_enabled() and (
        input.requires_grad
        or any(p.requires_grad for p in params)
        or any(isinstance(t, Tensor) and t.requires_grad for t in hx_parts)
    ):
        return None
    L, H = layer.num_layers, layer.hidden_size
    x = input.reshape(-1, layer.input_size)  # (B, I): T = 1
    B = x.shape[0]
    want = (L, B, H) if batched else (L, H)
    if len(hx_parts) not in (0, len(layer.state_sizes)) or any(
        not isinstance(t, Tensor)
        or tuple(t.shape) != want
        or t.dtype != input.dtype
        or t.device != input.device
        for t in hx_parts
    ):
        return None  # the usual path reports the mistake
    backend = _backend(input)
    op = stack_op(layer, name) if backend == "torch" and get_backend("step") == "auto" else None
    if op is not None:  # torch's own op over the stack: one C++ call (rnnkit.layers.step_op)
        with torch.no_grad():
            return op_step(layer, op, params, input, hx_parts, batched)
    ops = OPS[backend]
    cache = layer.__dict__.get("_step_weights")
    if cache is None:
        cache = layer.__dict__["_step_weights"] = WeightCache()
    cached = cache.get(layer, name, ops, params)
    if cached is None or cached[0] != (input.dtype, input.device):
        return None  # the usual path raises torch's error for mixed dtypes or devices
    with torch.no_grad():
        return _run(layer, name, ops, cached[1], x, hx_parts, batched)


def _run(layer, name: str, ops, weights: list[dict], x: Tensor, hx_parts, batched: bool):
    L, H = layer.num_layers, layer.hidden_size
    B = x.shape[0]
    n_states = len(layer.state_sizes)
    # states in: (L, B, H) each, read per layer as (H, B) views; states out: written per layer
    # into fresh (L, B, H) tensors (never the caller's), returned as they are
    if hx_parts:
        states = [ops.array(t.reshape(L, B, H)) for t in hx_parts]
    else:
        states = [ops.array(x.new_zeros(L, B, H))] * n_states
    finals = [x.new_empty(L, B, H) for _ in range(n_states)]
    outs = [ops.array(t) for t in finals]
    step = STEPS[name]
    inp = ops.array(x).T  # (I, B)
    for l, p in enumerate(weights):
        new = step(ops, p, inp, tuple(s[l].T for s in states))
        for out, value in zip(outs, new, strict=True):
            out[l] = value.T
        inp = new[0]
    y = finals[0][L - 1].clone()  # (B, H): the top layer's new h, not a view of h_n
    if batched:
        y = y.unsqueeze(1) if layer.batch_first else y.unsqueeze(0)
    if not batched:  # unbatched input (1, I): output (1, H), states (L, H)
        finals = [t.squeeze(1) for t in finals]
    return y, (tuple(finals) if n_states > 1 else finals[0])
