"""The generic sequence task: a recurrent layer with a linear readout on sequences of numbers
or tokens, trained on batches that a ``Problem`` generates (the long-range tasks, the
pixel-by-pixel digits).

Every batch is generated from a seed derived from (data.seed, epoch, position), so a batch is
a pure function of where it sits in training and a resumed run sees exactly the batches it
would have seen; the validation set is generated once from its own seed (data.val_seed).

Model: input -> any rnnkit recurrent layer -> linear readout, of the last step (many-to-one:
adding, pixel-by-pixel digits) or of every step (many-to-many: copy and the toy tasks).
Continuous inputs feed the cell directly (its ``weight_ih`` is the input map); tokens (copy)
pass through an embedding. Cells: elman (tanh), irnn (ReLU Elman with identity recurrent
weights and zero biases, Le, Jaitly & Hinton 2015), lstm, peephole (LSTM with peepholes,
Gers & Schmidhuber 2000), gru, mingru (minimal GRU, Zhou et al. 2016), jordan.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.registry import REGISTRY, cell_names
from rnnkit.config import option
from rnnkit.data import synthetic
from rnnkit.errors import UserError
from rnnkit.layers.init import chrono_init_
from rnnkit.layers.torch_compat import BY_NAME
from rnnkit.tasks.base import EpochBatches, check_library_options
from rnnkit.train.trainer import TrainConfig, check_range

VARIANTS = {"irnn": "elman", "peephole": "lstm"}  # configured variants of registered cells
CELLS = (*cell_names(), *VARIANTS)  # every cell of the registry, then the variants
Cell = Literal[CELLS]  # type: ignore[valid-type]


def _cells_with(capability: str) -> tuple[str, ...]:
    """The names in CELLS whose cell (a variant's: its base cell's) has ``capability``."""
    return tuple(c for c in CELLS if getattr(REGISTRY[VARIANTS.get(c, c)], capability))


NONLINEAR = tuple(c for c in _cells_with("nonlinearities") if c not in VARIANTS)  # irnn: relu
FORGET_BIAS, CHRONO = _cells_with("forget_bias"), _cells_with("chrono_init")


# ---- configuration ---------------------------------------------------------------------------
@dataclass
class SeqModelConfig:
    cell: Cell = option("lstm", "the recurrent cell: " + ", ".join(CELLS))
    hidden_size: int = option(128, "H, the width of each recurrent layer")
    num_layers: int = option(1, "stacked recurrent layers")
    nonlinearity: Literal["tanh", "relu", "sigmoid", "identity"] = option(
        "tanh", "elman and jordan only: the hidden nonlinearity (irnn is always relu)"
    )
    bias: bool = option(True, "biases in the recurrent layer and the readout")
    forget_bias: float | None = option(None, "lstm, peephole: initial forget-gate bias")
    chrono_t_max: float | None = option(
        None,
        "lstm, peephole, gru, mingru: chrono initialisation of the gate biases for "
        "dependencies of up to this many steps (Tallec & Ollivier 2018), e.g. data.T",
    )
    embedding_size: int = option(16, "token inputs (copy): the embedding width")


@dataclass
class SyntheticDataConfig:
    T: int = option(100, "sequence length (copy: the delay between the symbols and the recall)")
    batch_size: int = option(50, "B, sequences per batch (the global batch across processes)")
    epoch_batches: int = option(1000, "batches per (nominal) epoch of generated data")
    val_size: int = option(1000, "sequences in the fixed validation set")
    seed: int = option(1, "seed of the training batches (with the epoch and position)")
    val_seed: int = option(1_000_003, "seed of the validation set")


@dataclass
class RunningAverageDataConfig(SyntheticDataConfig):
    a: float = option(0.5, "the decay a in y_t = x_t + a y_{t-1}")


@dataclass
class LongRangeConfig:
    model: SeqModelConfig = field(default_factory=SeqModelConfig)
    data: SyntheticDataConfig = field(default_factory=SyntheticDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass
class RunningAverageConfig(LongRangeConfig):
    data: RunningAverageDataConfig = field(default_factory=RunningAverageDataConfig)


# ---- what a task is: its data, its outputs, its scoring --------------------------------------
@dataclass(frozen=True)
class Problem:
    """One task's data and scoring, for ``SequenceTask``.

    Attributes:
        generate: (batch, generator) -> (x, y), time-major.
        scoring: "mse" (regression), "ce" (classification), or "copy" (classification at every
            step with the recall accuracy of the last 10 steps).
        many_to_one: read out the last step only.
        input_size: features per step, or the vocabulary size if ``tokens``.
        output_size: regression outputs or classes.
        baseline: (metric name, value) logged with every evaluation.
        metric: the figure ``rnnkit lab compare`` tables; lower is better unless it is an
            accuracy.
        validation: a fixed validation set (x, y); None: ``data.val_size`` sequences generated
            from ``data.val_seed``.
    """

    generate: Callable[[int, torch.Generator], tuple[Tensor, Tensor]]
    scoring: Literal["mse", "ce", "copy"]
    many_to_one: bool
    input_size: int
    output_size: int
    baseline: tuple[str, float]
    metric: str
    tokens: bool = False
    symbols: tuple[str, ...] = ()  # names of the input tokens, if ``tokens``
    validation: tuple[Tensor, Tensor] | None = None  # a fixed set (else generated)

    @property
    def lower_is_better(self) -> bool:
        return "accuracy" not in self.metric


@dataclass(frozen=True)
class Symbols:
    """The input tokens' names (none for continuous inputs): what the command line reports as
    the vocabulary and saves in checkpoints."""

    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        return {"symbols": list(self.names)}


def batch_seed(seed: int, epoch: int, position: int) -> int:
    """A 63-bit seed for the batch at (epoch, position): a hash, so nearby batches are unrelated."""
    digest = hashlib.blake2b(f"{seed}:{epoch}:{position}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


def make_layer(cfg: SeqModelConfig, input_size: int) -> nn.Module:
    """The recurrent layer named by ``cfg.cell`` (an rnnkit torch-compatible layer), chrono-
    initialised if ``cfg.chrono_t_max`` is set."""
    layer = _make_layer(cfg, input_size)
    if cfg.chrono_t_max is not None:
        chrono_init_(layer, cfg.chrono_t_max)
    return layer


def _make_layer(cfg: SeqModelConfig, input_size: int) -> nn.Module:
    I, H, L = input_size, cfg.hidden_size, cfg.num_layers
    if cfg.cell in NONLINEAR:
        return BY_NAME[cfg.cell](I, H, L, nonlinearity=cfg.nonlinearity, bias=cfg.bias)
    if cfg.cell == "irnn":
        layer = BY_NAME["elman"](I, H, L, nonlinearity="relu", bias=cfg.bias)
        with torch.no_grad():  # Le et al. 2015: W_hh = I, biases 0 (input weights as torch's)
            for name, p in layer.named_parameters():
                if name.startswith("weight_hh"):
                    p.copy_(torch.eye(H))
                elif name.startswith("bias"):
                    p.zero_()
        return layer
    if cfg.cell in FORGET_BIAS:  # the LSTM, with or without peepholes
        return BY_NAME["lstm"](
            I, H, L, bias=cfg.bias, peephole=cfg.cell == "peephole", forget_bias=cfg.forget_bias
        )
    return BY_NAME[cfg.cell](I, H, L, bias=cfg.bias)


class SequenceModel(nn.Module):
    """Input (embedding for tokens) -> recurrent layer -> linear readout.

    ``forward(x) -> outputs``: x (T, B, I) floats or (T, B) token ids; outputs (B, O) for
    many-to-one (the readout of the last step), else (T, B, O).
    """

    def __init__(self, problem: Problem, cfg: SeqModelConfig) -> None:
        super().__init__()
        self.many_to_one = problem.many_to_one
        width = problem.input_size
        self.embedding = None
        if problem.tokens:
            self.embedding = nn.Embedding(problem.input_size, cfg.embedding_size)
            width = cfg.embedding_size
        self.rnn = make_layer(cfg, width)
        self.head = nn.Linear(self.rnn.output_size, problem.output_size, bias=cfg.bias)

    def forward(self, x: Tensor) -> Tensor:
        h = self.embedding(x) if self.embedding is not None else x
        ys, _ = self.rnn(h)  # (T, B, H)
        return self.head(ys[-1] if self.many_to_one else ys)


def score(problem: Problem, out: Tensor, y: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
    """The mean loss of a batch and its sums for evaluation (detached)."""
    if problem.scoring == "mse":
        out = out.reshape(y.shape)
        se = (out - y).square()
        return se.mean(), {"sse": se.sum().detach(), "n": torch.tensor(float(y.numel()))}
    logits, labels = out.flatten(0, -2), y.flatten()
    nll = F.cross_entropy(logits, labels, reduction="none")
    sums = {
        "nll": nll.sum().detach(),
        "n": torch.tensor(float(labels.numel())),
        "correct": (logits.argmax(-1) == labels).sum().float(),
    }
    if problem.scoring == "copy":  # the last 10 steps are the recall
        recall = out[-synthetic.COPY_SYMBOLS :].argmax(-1) == y[-synthetic.COPY_SYMBOLS :]
        sums["recall_correct"] = recall.sum().float()
        sums["recall_n"] = torch.tensor(float(recall.numel()))
    return nll.mean(), sums


def metrics_from_sums(problem: Problem, sums: dict[str, float]) -> dict[str, float]:
    n = max(sums["n"], 1.0)
    name, value = problem.baseline
    if problem.scoring == "mse":
        mse = sums["sse"] / n
        return {"loss": mse, "mse": mse, name: value}
    out = {"loss": sums["nll"] / n, "accuracy": sums["correct"] / n}
    if problem.scoring == "copy":
        out["ce"] = out["loss"]  # per step, over all T + 20 steps (the baseline's convention)
        out["recall_accuracy"] = sums["recall_correct"] / max(sums["recall_n"], 1.0)
    return {**out, name: value}


# ---- the task --------------------------------------------------------------------------------
class SequenceTask(EpochBatches):
    """A many-to-one or many-to-many task on generated sequences (see ``rnnkit.train.Task``).

    Args:
        cfg: the run config (``model``, ``data``, ``train``).
        problem: the task's data and scoring.
        rank, world_size: this process's share of each global batch and of the validation set.
    """

    level = "sequence"  # not a language model's "char" or "word"
    unit = "sequences"  # what data_sizes count

    def __init__(
        self, cfg: LongRangeConfig, problem: Problem, *, rank: int = 0, world_size: int = 1
    ) -> None:
        self.cfg, self.problem = cfg, problem
        self.rank, self.world_size = rank, world_size
        B = cfg.data.batch_size
        if B % world_size:
            raise UserError(
                f"option 'data.batch_size' ({B}) must be a multiple of the process count "
                f"({world_size})"
            )
        self.local = slice(rank * B // world_size, (rank + 1) * B // world_size)
        if problem.validation is not None:
            x, y = problem.validation
        else:
            x, y = problem.generate(
                cfg.data.val_size, torch.Generator().manual_seed(cfg.data.val_seed)
            )
        n = x.shape[1]
        share = slice(rank * n // world_size, (rank + 1) * n // world_size)
        self.val_x, self.val_y = self._rows(x, y, share)
        self.data_sizes = {"train": cfg.data.epoch_batches * B, "val": n}
        self.vocab = Symbols(problem.symbols)
        torch.manual_seed(cfg.train.seed)  # the same initial weights in every process
        self.model = SequenceModel(problem, cfg.model)
        self.device = torch.device("cpu")
        self.epoch = 0

    def _rows(self, x: Tensor, y: Tensor, rows: slice) -> tuple[Tensor, Tensor]:
        """Sequences ``rows`` of a batch: x is (T, B, ...); y is (B, ...) if many-to-one."""
        return x[:, rows], (y[rows] if self.problem.many_to_one else y[:, rows])

    # ---- the Task protocol -------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        self.device = device
        self.val_x, self.val_y = self.val_x.to(device), self.val_y.to(device)

    def train_batch(self, position: int) -> tuple[Tensor, Tensor]:
        seed = batch_seed(self.cfg.data.seed, self.epoch, position)
        x, y = self.problem.generate(self.cfg.data.batch_size, torch.Generator().manual_seed(seed))
        return self._rows(x, y, self.local)

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, int]:
        x, y = (t.to(self.device) for t in batch)
        loss, _ = score(self.problem, model(x), y)
        return loss, y.numel()

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        B = self.cfg.data.batch_size
        starts = range(0, self.val_x.shape[1], B)
        if max_batches:
            starts = starts[:max_batches]
        totals: dict[str, float] = {}
        for start in starts:
            x, y = self._rows(self.val_x, self.val_y, slice(start, start + B))
            _, sums = score(self.problem, model(x), y)
            for k, v in sums.items():
                totals[k] = totals.get(k, 0.0) + float(v)
        return totals

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        out = metrics_from_sums(self.problem, sums)
        a = learned_decay(self.model)
        if a is not None:
            out["learned_a"] = a
        return out

    def carried_state(self) -> dict[str, Tensor]:
        # Generated batches depend on the epoch; the trainer restores the position itself.
        return {"epoch": torch.tensor(self.epoch)}

    def load_carried_state(self, tensors: dict[str, Tensor]) -> None:
        self.epoch = int(tensors["epoch"]) if "epoch" in tensors else 0

    def report(self, result: dict) -> str:
        """The line ``rnnkit train`` ends with: the metrics against the baseline."""
        name, value = self.problem.baseline
        shown = ", ".join(
            f"{k.replace('_', ' ')} {result[k]:.4g}"
            for k in (self.problem.metric, "recall_accuracy")
            if k in result
        )
        if "learned_a" in result:  # the running average's a, read off W_hh
            shown += f", learned a = {result['learned_a']:.6f}"
        return (
            f"done: step {result['step']}, validation {shown} ({name.replace('_', ' ')} "
            f"{value:.4g}), {result['seconds'] / 60:.1f} min"
        )


def learned_decay(model: nn.Module) -> float | None:
    """The recurrent weight of a one-unit, one-layer Elman RNN (the running average's ``a``)."""
    rnn = getattr(model, "rnn", None)
    w = getattr(rnn, "weight_hh_l0", None)
    if w is None or w.numel() != 1 or rnn.num_layers != 1 or getattr(rnn, "bidirectional", False):
        return None
    return float(w.detach().reshape(()))


def check_model_config(cfg: SeqModelConfig) -> None:
    """The options' combinations here; their values by the library's own checks."""
    check_range("model", cfg, {"embedding_size": (1, math.inf)})
    supports = REGISTRY[VARIANTS.get(cfg.cell, cfg.cell)]  # what the registry says the cell has
    if cfg.nonlinearity != "tanh" and (not supports.nonlinearities or cfg.cell in VARIANTS):
        raise UserError(
            f"option 'model.nonlinearity' applies to model.cell {' or '.join(NONLINEAR)}, "
            f"not {cfg.cell!r}"
        )
    if cfg.forget_bias is not None and not supports.forget_bias:
        raise UserError(
            f"option 'model.forget_bias' applies to model.cell {' or '.join(FORGET_BIAS)}, "
            f"not {cfg.cell!r}"
        )
    if cfg.chrono_t_max is not None:
        if not supports.chrono_init:
            raise UserError(
                f"option 'model.chrono_t_max' applies to the gated cells ({', '.join(CHRONO)}), "
                f"not {cfg.cell!r}"
            )
        if not (math.isfinite(cfg.chrono_t_max) and cfg.chrono_t_max >= 2):
            raise UserError(f"option 'model.chrono_t_max' must be >= 2, got {cfg.chrono_t_max}")
        if cfg.forget_bias is not None:
            raise UserError(
                "options 'model.chrono_t_max' and 'model.forget_bias' both set the "
                "forget-gate bias: give one"
            )
        if not cfg.bias:
            raise UserError("option 'model.chrono_t_max' sets gate biases: needs model.bias true")
    check_library_options("model", cfg, lambda: make_layer(cfg, 1))


@dataclass
class LoadedSequenceRun:
    """A trained sequence task, as ``load_run`` gives it back."""

    model: SequenceModel
    cfg: object
    problem: Problem
    meta: dict
    path: object


def loader(config_class: type, make_problem: Callable) -> Callable:
    """A ``TaskSpec.load`` for a sequence task: its model rebuilt from the saved config (of
    ``config_class``) and ``make_problem(cfg)``, the weights loaded, in eval mode."""

    def load(ckpt, path) -> LoadedSequenceRun:
        from rnnkit.train.restore import restore_model

        problems = []

        def build(cfg, _):
            problems.append(make_problem(cfg))
            return SequenceModel(problems[0], cfg.model)

        cfg, _, model = restore_model(ckpt, path, config_class, build)
        return LoadedSequenceRun(model, cfg, problems[0], ckpt.meta, path)

    return load
