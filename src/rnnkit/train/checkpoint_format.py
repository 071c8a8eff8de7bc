"""How a checkpoint's tensors and JSON are laid out: nested optimiser state as JSON with its
tensors stored beside it by key, tensors made safe for safetensors, and the checksum."""

from __future__ import annotations

import hashlib
import json

import torch
from torch import Tensor

_TENSOR = "__tensor__"  # {"__tensor__": key}: a tensor stored in the file under `key`
_TUPLE = "__tuple__"  # {"__tuple__": [...]}: JSON has no tuples (Adam's betas is one)
_ITEMS = "__items__"  # {"__items__": [[k, v], ...]}: a dict with non-str keys (param ids)


def checksum(tensors: dict[str, Tensor]) -> str:
    """sha256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key]
        digest.update(json.dumps([key, str(t.dtype), list(t.shape)]).encode())
        if t.numel():
            digest.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def dumps(obj: object, what: str) -> str:
    try:
        return json.dumps(obj)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{what} must hold only JSON values: {e}") from None


def put_tensor(tensors: dict[str, Tensor], key: str, t: object) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{key} must be a tensor, got {type(t).__name__}")
    if key in tensors:
        raise ValueError(f"two tensors would be stored as {key!r}")
    tensors[key] = t.detach().cpu()


def unshared(tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    """Contiguous tensors, none sharing memory with another (safetensors refuses both):
    tied weights, views and non-contiguous tensors are cloned; the rest are written as they are."""
    seen: set[int] = set()
    out = {}
    for key, t in tensors.items():
        if not t.is_contiguous():
            t = t.contiguous()
        elif t.numel() == 0 or t.untyped_storage().data_ptr() in seen:
            t = t.clone()
        if t.numel():
            seen.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def encode(obj: object, key: str, tensors: dict[str, Tensor]) -> object:
    """A JSON value for ``obj``, its tensors moved into ``tensors`` under keys starting ``key``."""
    if isinstance(obj, Tensor):
        put_tensor(tensors, key, obj)
        return {_TENSOR: key}
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        return {_ITEMS: [[k, encode(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, tuple):
        return {_TUPLE: [encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    return obj  # json.dumps rejects whatever is not a JSON value


def decode(obj: object, tensors: dict[str, Tensor]) -> object:
    """The inverse of ``encode``."""
    if isinstance(obj, dict):
        if set(obj) == {_TENSOR}:
            return tensors[obj[_TENSOR]]
        if set(obj) == {_TUPLE}:
            return tuple(decode(v, tensors) for v in obj[_TUPLE])
        if set(obj) == {_ITEMS}:
            return {k: decode(v, tensors) for k, v in obj[_ITEMS]}
        return {k: decode(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    return obj
