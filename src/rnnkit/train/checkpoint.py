"""Checkpoints: one safetensors file holding everything needed to resume a run exactly.

DESIGN.md, "Checkpoints and logs": weights in safetensors plus the JSON needed to rebuild the
model, with optimizer and RNG states kept so that training resumes exactly; written to a
temporary name and renamed; never pickle. The file's tensors (all on CPU, contiguous, none
sharing memory) are

    model.<name>         the model's state_dict
    optim.<path>         tensors of the optimizer's state_dict, e.g. optim.state.0.exp_avg
    extra.<name>         anything else the caller keeps, e.g. the carried hidden state
    rng.torch            torch's CPU generator; rng.cuda.<i> for each CUDA device

and its header metadata (str -> str) holds JSON strings:

    format               FORMAT_VERSION; a file of another version is refused
    rnnkit_version       the version that wrote the file
    meta                 the caller's dict: task, config, vocab, step, best loss, ...
    optim                the optimizer state_dict with each tensor replaced by {"__tensor__": key}
    rng.python           random.getstate()
    rng.numpy            numpy.random.get_state()
    sha256               a checksum of every tensor's name, dtype, shape and bytes (``_checksum``):
                         a file whose tensor data changed is refused; files written before it
                         was added have none and load unchecked

Loading uses ``safetensors.safe_open`` only, never ``torch.load``: a checkpoint from an untrusted
source cannot run code.
"""

from __future__ import annotations

import json
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from rnnkit.errors import UserError
from rnnkit.files import atomic_write
from rnnkit.train.checkpoint_format import checksum as _checksum
from rnnkit.train.checkpoint_format import decode as _decode
from rnnkit.train.checkpoint_format import dumps as _dumps
from rnnkit.train.checkpoint_format import encode as _encode
from rnnkit.train.checkpoint_format import put_tensor as _put
from rnnkit.train.checkpoint_format import unshared as _unshared

__all__ = [
    "FORMAT_VERSION",
    "Checkpoint",
    "RngState",
    "save_checkpoint",
    "load_checkpoint",
    "restore_rng",
    "check_compatible",
    "check_meta",
    "load_model_state",
]

FORMAT_VERSION = 1


@dataclass
class RngState:
    """The global random generators' states; opaque, for ``restore_rng``."""

    torch: Tensor
    cuda: list[Tensor]
    python: tuple
    numpy: tuple


@dataclass
class Checkpoint:
    """What ``load_checkpoint`` read from a file.

    Attributes:
        path: the file.
        meta: the caller's dict (task, config, vocab, step, ...).
        model_state: a state_dict for ``load_model_state``.
        optimizer_state: a torch optimizer state_dict for ``optimizer.load_state_dict``, or None.
        extra_tensors: the tensors given as ``extra_tensors``.
        rng: for ``restore_rng``, or None if the file was saved with ``rng=False``.
        rnnkit_version: the rnnkit version that wrote the file.
    """

    path: Path
    meta: dict[str, Any]
    model_state: dict[str, Tensor]
    optimizer_state: dict[str, Any] | None = None
    extra_tensors: dict[str, Tensor] = field(default_factory=dict)
    rng: RngState | None = None
    rnnkit_version: str = ""


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model_state: dict[str, Tensor],
    meta: dict[str, Any],
    optimizer_state: dict[str, Any] | None = None,
    rng: bool = True,
    extra_tensors: dict[str, Tensor] | None = None,
) -> None:
    """Write a checkpoint atomically: a crash leaves the old complete file or the new one.

    Args:
        path: the file, e.g. ``runs/x/last.safetensors``; parent directories are created.
        model_state: ``model.state_dict()``.
        meta: JSON-serialisable facts needed to rebuild and check the run (task, config, vocab,
            step, ...).
        optimizer_state: ``optimizer.state_dict()``; its non-tensor parts must be JSON values
            (numbers, strings, bools, None, lists, tuples, dicts).
        rng: also store the torch (CPU and CUDA), python and numpy global RNG states.
        extra_tensors: more tensors to keep, e.g. the hidden state carried across windows.

    Raises:
        TypeError: ``meta`` or the optimizer state holds something JSON cannot represent.
        UserError: the file cannot be written.
    """
    from rnnkit import __version__  # lazy: rnnkit/__init__ may import this module

    tensors: dict[str, Tensor] = {}
    header = {
        "format": str(FORMAT_VERSION),
        "rnnkit_version": __version__,
        "meta": _dumps(meta, "meta"),
    }
    for name, t in model_state.items():
        _put(tensors, f"model.{name}", t)
    if optimizer_state is not None:
        header["optim"] = _dumps(_encode(optimizer_state, "optim", tensors), "optimizer_state")
    for name, t in (extra_tensors or {}).items():
        _put(tensors, f"extra.{name}", t)
    if rng:
        state = _capture_rng()
        tensors["rng.torch"] = state.torch
        for i, s in enumerate(state.cuda):
            tensors[f"rng.cuda.{i}"] = s
        header["rng.python"] = json.dumps(state.python)
        name, keys, *rest = state.numpy
        header["rng.numpy"] = json.dumps([name, keys.tolist(), *rest])
    tensors = _unshared(tensors)
    header["sha256"] = _checksum(tensors)

    def write(tmp: Path) -> None:
        try:
            save_file(tensors, tmp, metadata=header)
        except SafetensorError as e:  # e.g. "I/O error: No space left on device"
            raise OSError(" ".join(str(e).split())) from e

    atomic_write(path, write)


def checkpoint_task(path: str | os.PathLike) -> str:
    """The task a checkpoint was trained for, read from its header alone (no tensor is read).

    Raises:
        UserError: the file is missing, not an rnnkit checkpoint, or names no task.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
        meta = json.loads(header.get("meta", "null"))
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    except (SafetensorError, RuntimeError, ValueError) as e:
        raise _corrupt(path, e) from None
    if not isinstance(meta, dict) or not isinstance(meta.get("task"), str):
        raise UserError(f"{path} is not an rnnkit checkpoint of a task (no task in its metadata)")
    return meta["task"]


def load_checkpoint(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    *,
    require: tuple[str, ...] = (),
) -> Checkpoint:
    """Read a checkpoint written by ``save_checkpoint``, without pickle.

    Args:
        path: the file.
        map_location: the device for the model, optimizer and extra tensors (RNG states stay on
            the CPU, where torch needs them).
        require: keys the caller reads from ``meta`` (e.g. ``("task", "config", "vocab")``):
            each must be present and of its kind (see ``check_meta``).

    Returns:
        A ``Checkpoint``; tensors keep their saved dtypes (e.g. Adam's float32 ``step``).

    Raises:
        UserError: the file is missing, not a safetensors file, truncated or corrupt (its tensors
            do not match the saved checksum, its metadata is not a JSON object or lacks a
            required key, its RNG states cannot be restored), or of another format version; the
            message names the file.
    """
    path = Path(path)
    if not path.exists():
        raise UserError(f"checkpoint {path} not found")
    if path.is_dir():
        raise UserError(f"checkpoint {path} is a directory, not a file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            header = f.metadata() or {}
            tensors = {key: f.get_tensor(key) for key in f.keys()}
    except OSError as e:
        raise UserError(f"cannot read checkpoint {path}: {e.strerror or e}") from None
    except (SafetensorError, RuntimeError, ValueError) as e:
        raise _corrupt(path, e) from None

    version = header.get("format")
    if version is None:
        raise UserError(
            f"{path} is a safetensors file but not an rnnkit checkpoint (no format version)"
        )
    if version != str(FORMAT_VERSION):
        raise UserError(
            f"checkpoint {path} has format version {version}; "
            f"this rnnkit reads version {FORMAT_VERSION}"
        )
    if "sha256" in header and _checksum(tensors) != header["sha256"]:
        raise UserError(
            f"checkpoint {path} is corrupt: its tensor data does not match the checksum saved "
            "with it (the file was changed or damaged after it was written)"
        )
    device = torch.device(map_location)
    groups: dict[str, dict[str, Tensor]] = {"model": {}, "optim": {}, "extra": {}, "rng": {}}
    for key, t in tensors.items():
        prefix, _, name = key.partition(".")
        if prefix not in groups or not name:
            raise _corrupt(path, f"unexpected tensor {key!r}")
        groups[prefix][name] = t if prefix == "rng" else t.to(device)
    try:
        meta = json.loads(header["meta"])
        optimizer_state = None
        if "optim" in header:
            optim_tensors = {f"optim.{k}": t for k, t in groups["optim"].items()}
            optimizer_state = _decode(json.loads(header["optim"]), optim_tensors)
        rng = None
        if "torch" in groups["rng"]:
            python = json.loads(header["rng.python"])
            numpy = json.loads(header["rng.numpy"])
            cuda = [groups["rng"][f"cuda.{i}"] for i in range(len(groups["rng"]) - 1)]
            rng = RngState(
                torch=groups["rng"]["torch"],
                cuda=cuda,
                python=(python[0], tuple(python[1]), python[2]),
                numpy=(numpy[0], np.asarray(numpy[1], dtype=np.uint32), *numpy[2:]),
            )
    except (KeyError, ValueError, TypeError, IndexError) as e:
        raise _corrupt(path, f"bad header: {type(e).__name__} {e}") from None
    if not isinstance(meta, dict):
        raise _corrupt(path, f"its metadata is a JSON {_json_kind(meta)}, not an object")
    check_meta(meta, require, path)
    if rng is not None:
        _check_rng(rng, path)
    return Checkpoint(
        path=path,
        meta=meta,
        model_state=groups["model"],
        optimizer_state=optimizer_state,
        extra_tensors=groups["extra"],
        rng=rng,
        rnnkit_version=header.get("rnnkit_version", ""),
    )


def restore_rng(rng: RngState) -> None:
    """Set the torch (CPU, and CUDA if present), python and numpy generators to a saved state.

    Args:
        rng: ``Checkpoint.rng``. CUDA states are restored for the devices present, in order.
    """
    torch.set_rng_state(rng.torch)
    if rng.cuda and torch.cuda.is_available():
        for i, s in enumerate(rng.cuda[: torch.cuda.device_count()]):
            torch.cuda.set_rng_state(s, i)
    random.setstate(rng.python)
    np.random.set_state(rng.numpy)


_META_KINDS: dict[str, tuple[type, str]] = {
    "task": (str, "a string"),
    "level": (str, "a string"),
    "config": (dict, "an object"),
    "vocab": (dict, "an object"),
    "trainer": (dict, "an object"),
}
_TRAINER_KINDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "step": (int, "an int"),
    "epoch": (int, "an int"),
    "position": (int, "an int"),
    "best": ((int, float), "a number"),
    "bad_evals": (int, "an int"),
}


def check_meta(meta: dict[str, Any], keys: tuple[str, ...], path: str | os.PathLike) -> None:
    """Refuse a checkpoint whose metadata lacks a key the caller reads, or holds the wrong kind.

    Args:
        meta: ``Checkpoint.meta``.
        keys: the keys read, e.g. ``("task", "config", "vocab")``; ``"trainer"`` also checks
            the trainer's counters (step, epoch, position, best, bad_evals).
        path: the checkpoint, for the message.

    Raises:
        UserError: e.g. ``checkpoint c.safetensors is incomplete: its metadata lacks 'vocab'``.
    """
    for key in keys:
        if key not in meta:
            raise UserError(f"checkpoint {path} is incomplete: its metadata lacks {key!r}")
        kind, name = _META_KINDS.get(key, (object, "any value"))
        if not isinstance(meta[key], kind):
            raise UserError(
                f"checkpoint {path} is corrupt: metadata {key!r} is a JSON "
                f"{_json_kind(meta[key])}, expected {name}"
            )
    if "trainer" in keys:
        state = meta["trainer"]
        for key, (kind, name) in _TRAINER_KINDS.items():
            value = state.get(key)
            if key not in state or isinstance(value, bool) or not isinstance(value, kind):
                got = f"a JSON {_json_kind(value)}" if key in state else "missing"
                raise UserError(
                    f"checkpoint {path} is corrupt: metadata 'trainer.{key}' is {got}, "
                    f"expected {name}"
                )


def check_compatible(
    meta: dict[str, Any], expected: dict[str, Any], path: str | os.PathLike
) -> None:
    """Refuse a checkpoint made for something else, e.g. another task.

    Args:
        meta: ``Checkpoint.meta``.
        expected: the values that must match, e.g. ``{"task": "charlm"}``.
        path: the checkpoint, for the message.

    Raises:
        UserError: e.g. ``checkpoint runs/x/last.safetensors is for task 'wordlm', not 'charlm'``.
    """
    for key, want in expected.items():
        if key not in meta:
            raise UserError(f"checkpoint {path} does not record its {key} (expected {want!r})")
        if meta[key] != want:
            raise UserError(f"checkpoint {path} is for {key} {meta[key]!r}, not {want!r}")


def load_model_state(model: nn.Module, state: dict[str, Tensor], path: str | os.PathLike) -> None:
    """``model.load_state_dict(state, strict=True)``, with a mismatch as a one-line UserError.

    The keys and shapes are checked before anything is copied, so on error the model is
    unchanged.

    Args:
        model: the freshly built model.
        state: ``Checkpoint.model_state``.
        path: the checkpoint, for the message.

    Raises:
        UserError: naming the file and the first missing key, unexpected key or wrong shape, or
            a tensor holding NaN or inf.
    """
    want = model.state_dict()
    problem = f"checkpoint {path} does not fit the model:"
    for label, keys in (
        ("missing key", [k for k in want if k not in state]),
        ("unexpected key", [k for k in state if k not in want]),
    ):
        if keys:
            more = f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""
            raise UserError(f"{problem} {label} {keys[0]!r}{more}")
    for k, t in want.items():
        if state[k].shape != t.shape:
            raise UserError(
                f"{problem} {k!r} has shape {tuple(state[k].shape)} in the checkpoint, "
                f"{tuple(t.shape)} in the model"
            )
    for k, t in state.items():  # a diverged run's weights would decode NaN
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise UserError(f"checkpoint {path} holds NaN or inf weights ({k!r}): it is unusable")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:  # a module's own _load_from_state_dict may still object
        raise UserError(f"{problem} {str(e).strip().splitlines()[-1].strip()}") from None


# ---------------------------------------------------------------------------------------------


def _corrupt(path: Path, e: object) -> UserError:
    reason = " ".join(str(e).split())  # one line
    return UserError(f"checkpoint {path} is not a safetensors file or is corrupt ({reason})")


def _json_kind(value: object) -> str:
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _check_rng(rng: RngState, path: Path) -> None:
    """Try the saved states on fresh generators, so that a bad one is refused here, naming the
    file, rather than failing inside ``restore_rng`` with the global state half restored."""
    try:
        torch.Generator().set_state(rng.torch)
        random.Random().setstate(rng.python)
        np.random.RandomState().set_state(rng.numpy)
    except (RuntimeError, ValueError, TypeError, IndexError, OverflowError) as e:
        raise _corrupt(path, f"invalid RNG state: {e}") from None


def _capture_rng() -> RngState:
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return RngState(
        torch=torch.get_rng_state(),
        cuda=[s.cpu() for s in cuda],
        python=random.getstate(),
        numpy=(name, keys, int(pos), int(has_gauss), float(gauss)),
    )
