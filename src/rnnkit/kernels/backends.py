"""The fused paths' backends: one way to switch them and to ask which is set.

Seven paths have more than one implementation of the same function, each chosen by a setting:

``"lstm"``: what runs a plain LSTM sequence (no peephole, no layer_norm) over a batch without a
    mask, which is exactly torch.nn.LSTM's function (``rnnkit.kernels.lstm.use_fused``).
    ``"auto"`` (the default) runs torch's fused op (``torch._VF.lstm``, oneDNN) where that is the
    faster one, float32 on the CPU with oneDNN enabled and T >= 2, and the hand-derived kernel
    elsewhere; ``"torch"`` runs torch's op always (any dtype: for tests and comparisons);
    ``"rnnkit"`` runs the hand-derived kernel always. Peepholes, layer_norm and masked batches
    (variable lengths) always run the hand-derived kernel.
``"step"``: how a torch-compatible layer runs one step without autograd, a sampler's call
    (``rnnkit.layers.stepper``). ``"auto"`` (the default) uses ``"numpy"`` for float32 and
    float64 on the CPU while torch runs one intra-op thread, and ``"torch"`` otherwise;
    ``"numpy"`` and ``"torch"`` run the same concatenated-weight step on numpy arrays or on
    torch tensors; ``"off"`` takes the usual path (the cell's forward).
``"fused"``: how the hand-derived kernels do each step's element-wise work
    (``rnnkit.kernels.fused``). ``"auto"`` (the default; ``$RNNKIT_FUSED`` sets the initial
    value) runs one compiled call per step for float32 and float64 on the CPU where the C++
    source builds, and the PyTorch ops otherwise (saying so once when it cannot build);
    ``"compiled"`` requires the compiled step; ``"torch"`` runs the PyTorch ops always.
``"packed"``: how a stack of plain GRU or LSTM layers runs a padded batch with lengths when
    gradients are off (``rnnkit.layers.packed``): ``"auto"`` (the default) as torch's one packed
    call, ``"off"`` through the hand-derived kernels, layer by layer.
``"rebuild"``: how checkpointing through time recomputes the top layer of a stack
    (``rnnkit.kernels.recompute``): ``"auto"`` (the default) rebuilds its chunks from its kept
    outputs where its kernel can (``rnnkit.kernels.rebuild``), ``"off"`` runs its recursion
    again like the other layers'.
``"onednn"``: how the Elman, GRU (reset after), minimal GRU and hand-derived LSTM kernels
    multiply by W_hh at each step, forward and backward (``rnnkit.kernels.onednn``):
    ``"auto"`` (the default) through oneDNN with the weight packed once a sequence, for
    float32 on the CPU and products of at least 2^24 multiply-adds; ``"off"`` with
    torch.addmm. The two differ only in the order of float32 additions.
``"elman"``: what runs an Elman layer (tanh or ReLU, no mask) in inference, when no gradient is
    recorded (``rnnkit.kernels.elman.use_torch_op``): ``"auto"`` (the default) torch's own RNN
    op, one C++ loop; ``"rnnkit"`` the hand-derived kernel's forward. Training always runs the
    hand-derived kernel.
``"gru"``: the same for a GRU layer (reset after, no mask; ``rnnkit.kernels.gru.use_torch_op``):
    ``"auto"`` (the default) torch's own GRU op except where the hand kernel's forward is
    faster (a large W_hh packed for oneDNN, 4-64 rows); ``"rnnkit"`` the hand-derived
    kernel's forward.

Every choice computes the same function and is tested equal to the generic path. Use::

    get_backend("lstm")                    # "auto"
    set_backend("lstm", "rnnkit")          # stays set
    with set_backend("step", "torch"):     # restored on exit
        ...

The former switches remain as aliases: ``rnnkit.kernels.lstm.set_lstm_backend(value)`` and
``rnnkit.layers.stepper.set_step_backend(value)``, and ``BACKEND`` in those modules reads the
setting.
"""

from __future__ import annotations

import os

from rnnkit.errors import UserError

OPTIONS: dict[str, tuple[str, ...]] = {
    "lstm": ("auto", "torch", "rnnkit"),
    "step": ("auto", "numpy", "torch", "off"),
    "fused": ("auto", "compiled", "torch"),
    "packed": ("auto", "off"),
    "rebuild": ("auto", "off"),
    "onednn": ("auto", "off"),
    "elman": ("auto", "rnnkit"),
    "gru": ("auto", "rnnkit"),
}
"""Each switch and its values; the first is the default."""

_settings = {name: values[0] for name, values in OPTIONS.items()}
_pending_env = {"fused": "RNNKIT_FUSED"}  # read at the first use, so a bad value is one line


def _check_name(name: str) -> str:
    if name not in OPTIONS:
        raise ValueError(f"backend name must be one of {list(OPTIONS)}, got {name!r}")
    if name in _pending_env:  # the initial setting from the environment
        variable = _pending_env[name]
        value = os.environ.get(variable)
        if value and value not in OPTIONS[name]:  # refused at every use until it is mended
            raise UserError(
                f"environment variable {variable} is {value!r}: expected one of "
                + ", ".join(OPTIONS[name])
            )
        if value:
            _settings[name] = value
        del _pending_env[name]
    return name


def get_backend(name: str) -> str:
    """The value of the switch ``name`` ("lstm", "step", "fused", "packed" or "rebuild")."""
    return _settings[_check_name(name)]


class set_backend:
    """Set the switch ``name`` to ``value``; as a context manager, restore the previous value
    on exit: ``with set_backend("lstm", "rnnkit"): ...``. ``previous`` holds that value."""

    def __init__(self, name: str, value: str) -> None:
        options = OPTIONS[_check_name(name)]
        if value not in options:
            raise ValueError(f"{name} backend must be one of {list(options)}, got {value!r}")
        self.name, self.previous = name, _settings[name]
        _settings[name] = value

    def __enter__(self) -> set_backend:
        return self

    def __exit__(self, *exc) -> None:
        _settings[self.name] = self.previous
