"""Rebuilding a trained model from its checkpoint: the one shape of every task's
``TaskSpec.load``."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from rnnkit.errors import UserError
from rnnkit.train.checkpoint import Checkpoint, check_meta, load_model_state


def restore_model(
    ckpt: Checkpoint,
    path: str | os.PathLike,
    config_type: type,
    build: Any,
    read_vocab: Any = None,
    check: Any = None,
    keys: tuple[str, ...] = (),
) -> tuple[Any, Any, nn.Module]:
    """What every task's ``TaskSpec.load`` does with a checkpoint: check its metadata, rebuild
    the config and the vocabulary, then the model with the saved weights, in eval mode.

    Args:
        ckpt: the loaded checkpoint; path: its file, for messages.
        config_type: the task's config dataclass (``config_from_dict``).
        build: ``build(cfg, vocab) -> nn.Module``, the untrained model.
        read_vocab: ``read_vocab(meta["vocab"])``, for a task that saves a vocabulary.
        check: ``check(cfg)``, more checks of the config (raising ``UserError``).
        keys: further metadata keys the caller reads (``check_meta``).

    Returns:
        (cfg, vocab or None, model).

    Raises:
        UserError: one line naming the checkpoint, for missing or malformed metadata and for
            weights that do not fit the model.
    """
    from rnnkit.config import config_from_dict

    check_meta(ckpt.meta, ("config", *(("vocab",) if read_vocab else ()), *keys), path)
    try:
        cfg = config_from_dict(config_type, ckpt.meta["config"])
        if check is not None:
            check(cfg)
        vocab = read_vocab(ckpt.meta["vocab"]) if read_vocab else None
    except UserError as e:
        raise UserError(f"checkpoint {path}: {e}") from None
    model = build(cfg, vocab)
    load_model_state(model, ckpt.model_state, path)
    return cfg, vocab, model.eval()


@dataclass
class LoadedModel:
    """A trained run as ``model_loader`` gives it back: the model in eval mode, its vocabulary
    (None for a task that saves none), the config, the checkpoint's metadata and its file.
    A task subclasses it to name its types (``LoadedCaption``, ``LoadedOCR``, ...)."""

    model: nn.Module
    vocab: Any
    cfg: Any
    meta: dict
    path: Path


def model_loader(
    loaded_type: type[LoadedModel], config_type: type, build: Any, read_vocab: Any = None
) -> Callable[[Checkpoint, Path], Any]:
    """The ``TaskSpec.load`` of a task whose loaded run is just its model, vocabulary and config:
    ``restore_model`` (arguments as there), the result as a ``loaded_type``."""

    def load(ckpt: Checkpoint, path: Path) -> LoadedModel:
        cfg, vocab, model = restore_model(ckpt, path, config_type, build, read_vocab)
        return loaded_type(model, vocab, cfg, ckpt.meta, Path(path))

    return load
