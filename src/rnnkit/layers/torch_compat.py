"""Drop-in twins of torch.nn.RNN / LSTM / GRU, built from rnnkit's cells and layers.

Same constructor arguments, forward signature, outputs and state_dict names and layouts as
torch.nn (``ours.load_state_dict(theirs.state_dict())`` works both ways), plus rnnkit's options:
other nonlinearities, LSTM peepholes / layer norm / forget-gate bias, the GRU's reset convention,
residual connections, checkpointing through time (``checkpoint_steps``), a ``lengths`` argument
for padded batches, and the minimal GRU and Jordan RNN with the same interface. Not supported:
LSTM ``proj_size`` (an error says so).

Arguments are checked as torch.nn checks them (TypeError for a wrong type, ValueError for a
bad value), and so are the inputs of ``forward``: a mistake there (wrong shape, dtype or device,
an empty sequence) raises ``InputError``, which is both a ValueError (rnnkit's convention) and a
RuntimeError (what torch.nn raises for most of them), so code written for either catches it.

The parameters live on the layer itself under torch's names (``weight_ih_l0``,
``bias_hh_l1_reverse``, ...). The cells that compute with them are hidden from the module tree
and re-pointed at those parameters on every call, so ``.to()``, ``load_state_dict(assign=True)``
and parametrizations (weight norm, ...) all act on what the cells use.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnnkit.cells import REGISTRY, ElmanCell, GRUCell, JordanCell, LSTMCell, MinimalGRUCell
from rnnkit.cells.base import check_size
from rnnkit.layers.bidirectional import Bidirectional
from rnnkit.layers.recurrent import Recurrent
from rnnkit.layers.stacked import Stacked
from rnnkit.layers.stepper import try_step


class InputError(ValueError, RuntimeError):
    """A bad input or state given to a layer's ``forward``: a ValueError, as rnnkit's errors are,
    and a RuntimeError, as torch.nn's errors for the same mistakes are."""


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} should be of type bool, got: {type(value).__name__}")
    return value


class RecurrentLayer(nn.Module):
    """The common body of the torch-compatible layers; subclasses choose the cell.

    ``dropout`` may be changed after construction (torch.nn's layers allow it too); the new value
    is checked and used from the next call on.
    """

    cell_class: type[nn.Module]
    mode_name: str  # torch.nn's ``mode``: "LSTM", "GRU", ...
    proj_size = 0  # torch.nn's attribute; projections are not supported (LSTM refuses others)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        *,
        residual: bool = False,
        use_kernel: bool = True,
        checkpoint_steps: int = 0,
        **cell_options,
    ) -> None:
        super().__init__()
        if "proj_size" in cell_options:  # torch's message
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        check_size("num_layers", num_layers)  # input_size and hidden_size: the cells check them
        for name, value in (
            ("bias", bias),
            ("batch_first", batch_first),
            ("bidirectional", bidirectional),
        ):
            check_bool(name, value)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first = bias, batch_first
        self.bidirectional, self.residual = bidirectional, residual
        self.cell_options = cell_options
        D = 2 if bidirectional else 1
        cells, layers, self._links = [], [], []
        width = input_size
        for l in range(num_layers):
            directions = []
            for suffix in ["", "_reverse"][:D]:
                cell = self.cell_class(
                    width, hidden_size, bias, device=device, dtype=dtype, **cell_options
                )
                for name, p in cell.named_parameters(recurse=False):
                    self.register_parameter(f"{name}_l{l}{suffix}", p)
                    self._links.append((cell, name, f"{name}_l{l}{suffix}"))
                cells.append(cell)
                directions.append(Recurrent(cell, use_kernel=use_kernel))
            layers.append(directions[0] if D == 1 else Bidirectional(*directions))
            width = D * cells[-1].output_size
        self.output_size = cells[-1].output_size
        self.state_sizes = cells[-1].state_sizes
        # Hidden from the module tree so the state_dict holds torch's names only.
        self.checkpoint_steps = checkpoint_steps
        stack = Stacked(
            layers, dropout=dropout, residual=residual, checkpoint_steps=checkpoint_steps
        )
        object.__setattr__(self, "_stack", stack)
        object.__setattr__(self, "_cells", cells)

    @property
    def dropout(self) -> float:
        """Dropout between layers; the stack holds it (and checks it on assignment)."""
        return self._stack.dropout

    @dropout.setter
    def dropout(self, p: float) -> None:
        self._stack.dropout = p

    @property
    def mode(self) -> str:
        """torch.nn's name of the recurrence: "LSTM", "GRU", "RNN_TANH", "RNN_RELU", ..."""
        return self.mode_name

    def flatten_parameters(self) -> None:
        """No-op, for code written for cuDNN's torch.nn layers."""

    @property
    def all_weights(self) -> list[list[Tensor]]:
        """Parameters grouped per layer and direction, as torch.nn's ``all_weights``."""
        groups: dict[int, list[Tensor]] = {}
        for cell, _, top in self._links:
            groups.setdefault(id(cell), []).append(getattr(self, top))
        return list(groups.values())

    def _sync(self) -> None:
        for cell, name, top in self._links:
            cell._parameters[name] = getattr(self, top)
        if self._stack.training != self.training:  # train() walks every submodule: only if needed
            self._stack.train(self.training)

    def forward(
        self,
        input: Tensor | PackedSequence,
        hx: Tensor | tuple[Tensor, ...] | None = None,
        *,
        lengths: Tensor | None = None,
    ):
        """As torch.nn's forward; ``lengths`` (B,) marks the real length of each padded sequence.

        Returns (output, h_n), or (output, (h_n, c_n)) for the LSTM, with torch's shapes.
        """
        if lengths is None:
            stepped = try_step(self, input, hx)  # one step without autograd: the sampler's call
            if stepped is not None:
                return stepped
        self._sync()
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise InputError("pass lengths or a PackedSequence, not both")
            original = input
            xs, lengths = pad_packed_sequence(input)  # original batch order, (T, B, I)
            lengths = lengths.to(xs.device)
            batched = True
        else:
            if not isinstance(input, Tensor) or input.dim() not in (2, 3):
                shape = tuple(input.shape) if isinstance(input, Tensor) else type(input).__name__
                raise InputError(f"input must be a 3-D (or unbatched 2-D) tensor, got {shape}")
            batched = input.dim() == 3
            xs = input if batched else input.unsqueeze(1)
            if batched and self.batch_first:
                xs = xs.transpose(0, 1)
        self._check_input(xs)
        states = self._unpack_hx(hx, xs.shape[1], batched, xs)
        ys, finals = self._stack(xs, states, lengths=lengths)
        hn = self._pack_hx(finals, batched)
        if packed:
            order = original.sorted_indices
            lens = lengths.cpu()
            if order is not None:  # back to the packing's (descending-length) order
                ys, lens = ys.index_select(1, order), lens[order.cpu()]
            data = pack_padded_sequence(ys, lens).data
            out = PackedSequence(
                data, original.batch_sizes, original.sorted_indices, original.unsorted_indices
            )
            return out, hn
        if not batched:
            ys = ys.squeeze(1)
        elif self.batch_first:
            ys = ys.transpose(0, 1)
        return ys, hn

    def _check_input(self, xs: Tensor) -> None:
        """xs (T, B, I) against the layer: features, length, dtype and device (torch's checks)."""
        if xs.shape[-1] != self.input_size:
            raise InputError(
                f"input has {xs.shape[-1]} features, expected input_size={self.input_size}"
            )
        if xs.shape[0] == 0:  # torch's message, word for word
            raise InputError("Expected sequence length to be larger than 0 in RNN")
        weight = getattr(self, self._links[0][2])
        if xs.dtype != weight.dtype:
            raise InputError(
                f"input dtype {xs.dtype} does not match the parameters' dtype {weight.dtype}: "
                f"convert the input (input.to({weight.dtype})) or the layer (.to({xs.dtype}))"
            )
        if xs.device != weight.device:
            raise InputError(
                f"input is on {xs.device} but the parameters are on {weight.device}: "
                "move one to the other's device"
            )

    # torch layout of states: (L*D, B, H) per state tensor, layer-major, forward before reverse
    def _unpack_hx(self, hx, B: int, batched: bool, xs: Tensor):
        if hx is None:
            return None
        parts = hx if isinstance(hx, tuple) else (hx,)
        if len(parts) != len(self.state_sizes):
            raise InputError(f"hx must hold {len(self.state_sizes)} tensor(s), got {len(parts)}")
        D = 2 if self.bidirectional else 1
        per_tensor = []
        for part, size in zip(parts, self.state_sizes, strict=True):
            want = (self.num_layers * D, B, size) if batched else (self.num_layers * D, size)
            if not isinstance(part, Tensor) or tuple(part.shape) != want:
                got = tuple(part.shape) if isinstance(part, Tensor) else type(part).__name__
                raise InputError(f"hx must have shape {want}, got {got}")
            if part.dtype != xs.dtype or part.device != xs.device:
                raise InputError(
                    f"hx is {part.dtype} on {part.device} but the input is {xs.dtype} on "
                    f"{xs.device}: they must agree"
                )
            part = part if batched else part.unsqueeze(1)
            per_tensor.append(part.unbind(0))
        states = []
        for l in range(self.num_layers):
            dirs = [tuple(t[l * D + d] for t in per_tensor) for d in range(D)]
            dirs = [s[0] if len(s) == 1 else s for s in dirs]
            states.append(dirs[0] if D == 1 else tuple(dirs))
        return states

    def _pack_hx(self, finals, batched: bool):
        flat = []
        for state in finals:
            flat.extend(state if self.bidirectional else [state])
        per_tensor = [
            torch.stack([s[k] if isinstance(s, tuple) else s for s in flat])
            for k in range(len(self.state_sizes))
        ]
        if not batched:
            per_tensor = [t.squeeze(1) for t in per_tensor]
        return per_tensor[0] if len(per_tensor) == 1 else tuple(per_tensor)

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        for key, default in (
            ("bias", True),
            ("batch_first", False),
            ("dropout", 0.0),
            ("bidirectional", False),
            ("residual", False),
            ("checkpoint_steps", 0),
        ):
            if getattr(self, key) != default:
                s += f", {key}={getattr(self, key)}"
        for key, value in self.cell_options.items():
            s += f", {key}={value!r}"
        return s


class RNN(RecurrentLayer):
    """Elman RNN layer, a drop-in twin of ``torch.nn.RNN``; nonlinearity tanh, relu, sigmoid or
    identity (the last two are rnnkit's). Cell: ``rnnkit.cells.ElmanCell``."""

    cell_class = ElmanCell

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        device=None,
        dtype=None,
        **options,
    ) -> None:
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
            nonlinearity=nonlinearity,
            **options,
        )

    @property
    def nonlinearity(self) -> str:
        """The cell's nonlinearity, fixed at construction (read-only)."""
        return self._cells[0].nonlinearity

    @property
    def mode(self) -> str:
        """torch.nn's name: "RNN_TANH" or "RNN_RELU" (rnnkit's "RNN_SIGMOID", "RNN_IDENTITY")."""
        return f"RNN_{self.nonlinearity.upper()}"


class LSTM(RecurrentLayer):
    """LSTM layer, a drop-in twin of ``torch.nn.LSTM``. Extra keyword options: ``peephole``,
    ``layer_norm``, ``forget_bias`` (see ``rnnkit.cells.LSTMCell``), ``residual``, ``use_kernel``,
    ``checkpoint_steps`` (see ``rnnkit.layers.Stacked``).
    ``proj_size`` other than 0 is not supported."""

    cell_class = LSTMCell
    mode_name = "LSTM"

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
        **options,
    ) -> None:
        if proj_size:
            raise ValueError(f"proj_size={proj_size} is not supported by rnnkit.LSTM (only 0)")
        super().__init__(
            input_size,
            hidden_size,
            num_layers,
            bias,
            batch_first,
            dropout,
            bidirectional,
            device,
            dtype,
            **options,
        )


class GRU(RecurrentLayer):
    """GRU layer, a drop-in twin of ``torch.nn.GRU``. Extra keyword option ``reset_after``
    (True: torch's convention; False: Cho et al. 2014's), see ``rnnkit.cells.GRUCell``."""

    cell_class = GRUCell
    mode_name = "GRU"


class MinimalGRU(RecurrentLayer):
    """Minimal GRU layer (update gate only, ``rnnkit.cells.MinimalGRUCell``), torch's interface."""

    cell_class = MinimalGRUCell
    mode_name = "MINIMAL_GRU"


class JordanRNN(RecurrentLayer):
    """Jordan RNN layer (``rnnkit.cells.JordanCell``), torch's interface. The state and the
    outputs are the cell outputs y, of width ``output_size`` (default hidden_size); extra keyword
    options ``output_size``, ``nonlinearity``, ``output_nonlinearity``."""

    cell_class = JordanCell
    mode_name = "JORDAN"


LAYER_OF_CELL: dict[type[nn.Module], type[RecurrentLayer]] = {
    layer.cell_class: layer for layer in (RNN, LSTM, GRU, MinimalGRU, JordanRNN)
}
"""The torch-compatible layer built from each cell class."""

BY_NAME = {name: LAYER_OF_CELL[info.cls] for name, info in REGISTRY.items()}
"""The layers by the cells' names (``rnnkit.cells.REGISTRY``), as configurations use them."""
