"""Will the model fit? A lower bound on its parameters, checked before a run directory exists.

A model far too large for the machine (``--model.hidden_size 1000000000``) would otherwise fail
in the allocator after the run directory was made, or pass the allocation (memory overcommit)
and be killed by the kernel while it is being initialised. The bound reads only the model
section of a config, by the names every task uses (``hidden_size``, ``embedding_size``,
``num_layers`` or ``decoder_layers``, ``cell``), so it needs neither the data nor the task: each
recurrent layer has at least G·H·(I + H) weights (G gates; minGRU has no H×H matrix), and the
vocabulary, the encoder and the output layer only add to that.
"""

from __future__ import annotations

import os

from rnnkit.cells import REGISTRY
from rnnkit.errors import UserError

FLOAT_BYTES = 4
COPIES = {"adamw": 4, "adam": 4, "sgd": 3}  # weights, gradients, optimizer moments


def physical_memory() -> int | None:
    """The machine's RAM in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):
        return None


def parameter_lower_bound(model) -> int:
    """At least this many parameters: the recurrent layers' input and recurrent matrices.

    Args:
        model: a config's model section (a dataclass with ``hidden_size``).

    Returns:
        0 if it has no ``hidden_size``.
    """
    H = getattr(model, "hidden_size", 0)
    if not isinstance(H, int) or H < 1:
        return 0
    E = max(1, getattr(model, "embedding_size", 1))
    L = max(1, getattr(model, "num_layers", 0) or getattr(model, "decoder_layers", 0) or 1)
    cell = getattr(model, "cell", "")
    info = REGISTRY.get("lstm" if cell == "peephole" else cell)  # irnn etc.: one gate
    G = info.gates if info is not None else 1
    return G * H * (E + H) + (L - 1) * G * H * (H + H)


def check_model_memory(cfg, memory: int | None = None) -> None:
    """Refuse a model whose lower-bound size cannot be trained in this machine's memory.

    Args:
        cfg: a run config with ``model`` and ``train`` sections (others pass unchecked).
        memory: bytes available (default: ``physical_memory()``).

    Raises:
        UserError: naming the model's size options and the memory they need and there is.
    """
    model = getattr(cfg, "model", None)
    n = parameter_lower_bound(model)
    memory = physical_memory() if memory is None else memory
    if not n or memory is None:
        return
    optimizer = getattr(getattr(cfg, "train", None), "optimizer", "adamw")
    need = n * FLOAT_BYTES * COPIES.get(optimizer, 4)
    if need <= memory:
        return
    names = ("hidden_size", "embedding_size", "num_layers", "decoder_layers")
    sizes = ", ".join(
        f"model.{k} {getattr(model, k)}" for k in names if isinstance(getattr(model, k, None), int)
    )
    raise UserError(
        f"the model is too large for this machine: {sizes} make at least {n:,} parameters, "
        f"{_gb(need)} to train with {optimizer} (weights, gradients, optimizer state), and this "
        f"machine has {_gb(memory)} of memory: choose smaller sizes"
    )


def _gb(n: int) -> str:
    return f"{n / 1e9:,.1f} GB"
