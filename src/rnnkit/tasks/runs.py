"""Loading a trained language model back from its run directory or checkpoint file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from rnnkit.data.text import Vocab
from rnnkit.errors import UserError
from rnnkit.tasks.lm import LanguageModel, LMConfig
from rnnkit.train.checkpoint import load_checkpoint
from rnnkit.train.restore import restore_model
from rnnkit.train.run_dir import checkpoint_path

LM_TASKS = ("charlm", "wordlm")


@dataclass
class LoadedRun:
    model: nn.Module
    vocab: Vocab
    level: str
    meta: dict
    path: Path

    def start_ids(self) -> list[int]:
        """The context a text is generated or scored after: a line start (newline or <eos>)."""
        token = self.vocab.eos_token if self.level == "word" else "\n"
        if token is None or token not in self.vocab.stoi:
            return [0]
        return [self.vocab.stoi[token]]


def load_lm(ckpt, path: Path) -> LoadedRun:
    """A language model's checkpoint (``TaskSpec.load`` of the language-model tasks)."""

    def build(cfg, vocab):
        return LanguageModel(len(vocab), cfg.model)

    _, vocab, model = restore_model(ckpt, path, LMConfig, build, Vocab.from_dict, keys=("level",))
    return LoadedRun(model, vocab, ckpt.meta["level"], ckpt.meta, path)


def load_run(run: Path, loader: Callable | None = load_lm, what: str = "a language model"):
    """A trained run of any task (its best checkpoint, else the last), or a checkpoint file,
    loaded by its task's ``TaskSpec.load``: the model in eval mode and what it needs.

    Args:
        run: a run directory or a .safetensors checkpoint.
        loader: accept only tasks loaded by this function (default: ``load_lm``, the language
            models; None: any task); ``what`` names the accepted tasks in the error.
    """
    from rnnkit.tasks.base import registry

    path = checkpoint_path(Path(run))
    ckpt = load_checkpoint(path, require=("task",))
    task = ckpt.meta["task"]
    spec = registry().get(task)
    if spec is None or spec.load is None or (loader is not None and spec.load is not loader):
        raise UserError(f"{path} is a {task!r} checkpoint, not {what}")
    return spec.load(ckpt, path)


def load_task_run(run: str | Path, loader: Callable, what: str):
    """``load_run`` of the one task loaded by ``loader``, for that task's commands (``predict``,
    ``eval``): torch then uses the run's ``train.threads`` threads (0: as many as it had)."""
    loaded = load_run(Path(run), loader, what)
    torch.set_num_threads(loaded.cfg.train.threads or torch.get_num_threads())
    return loaded
