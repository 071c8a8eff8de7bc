"""Long-range sequence tasks on generated data: the adding problem, the copy task, toy RNN tasks.

    rnnkit train adding [--preset tiny] [--data.T 200] [--model.cell gru] ...
    rnnkit train copy | running_average | running_sum | larger_total

Each task is a ``Problem`` (its generator, scoring and baseline) for the generic sequence task
of ``rnnkit.tasks.sequence_task`` (the model, the batches by seed, the loss and the metrics).

References: Hochreiter & Schmidhuber 1997 (adding); Arjovsky, Shah & Bengio 2016 (copy, and the
adding variant with one marker in each half); Le et al. 2015 (IRNN).
"""

from __future__ import annotations

import math
from collections.abc import Callable

from rnnkit.data import synthetic
from rnnkit.tasks import TaskSpec, register
from rnnkit.tasks.sequence_task import CELLS as CELLS
from rnnkit.tasks.sequence_task import Cell as Cell
from rnnkit.tasks.sequence_task import LongRangeConfig as LongRangeConfig
from rnnkit.tasks.sequence_task import Problem as Problem
from rnnkit.tasks.sequence_task import RunningAverageConfig as RunningAverageConfig
from rnnkit.tasks.sequence_task import RunningAverageDataConfig as RunningAverageDataConfig
from rnnkit.tasks.sequence_task import SeqModelConfig as SeqModelConfig
from rnnkit.tasks.sequence_task import SequenceModel as SequenceModel
from rnnkit.tasks.sequence_task import SequenceTask as SequenceTask
from rnnkit.tasks.sequence_task import Symbols as Symbols
from rnnkit.tasks.sequence_task import SyntheticDataConfig as SyntheticDataConfig
from rnnkit.tasks.sequence_task import batch_seed as batch_seed
from rnnkit.tasks.sequence_task import check_model_config as check_model_config
from rnnkit.tasks.sequence_task import learned_decay as learned_decay
from rnnkit.tasks.sequence_task import loader
from rnnkit.tasks.sequence_task import make_layer as make_layer
from rnnkit.tasks.sequence_task import metrics_from_sums as metrics_from_sums
from rnnkit.tasks.sequence_task import score as score
from rnnkit.train.trainer import check_range, check_train_config


# ---- the tasks -------------------------------------------------------------------------------
def adding_problem(cfg: LongRangeConfig) -> Problem:
    T = cfg.data.T
    return Problem(
        generate=lambda batch, g: synthetic.adding(batch, T, g),
        scoring="mse",
        many_to_one=True,
        input_size=2,
        output_size=1,
        baseline=("baseline_mse", synthetic.adding_baseline_mse()),
        metric="mse",
    )


def copy_problem(cfg: LongRangeConfig) -> Problem:
    T = cfg.data.T
    return Problem(
        generate=lambda batch, g: synthetic.copy_task(batch, T, g),
        scoring="copy",
        many_to_one=False,
        input_size=synthetic.COPY_VOCAB,
        output_size=synthetic.COPY_VOCAB,
        tokens=True,
        symbols=synthetic.COPY_NAMES,
        baseline=("baseline_ce", synthetic.copy_baseline_ce(T)),
        metric="ce",
    )


def running_average_problem(cfg: RunningAverageConfig) -> Problem:
    T, a = cfg.data.T, cfg.data.a
    return Problem(
        generate=lambda batch, g: synthetic.running_average(batch, T, g, a=a),
        scoring="mse",
        many_to_one=False,
        input_size=1,
        output_size=1,
        baseline=("baseline_mse", synthetic.running_average_baseline_mse(T, a)),
        metric="mse",
    )


def running_sum_problem(cfg: LongRangeConfig) -> Problem:
    T = cfg.data.T
    return Problem(
        generate=lambda batch, g: synthetic.running_sum(batch, T, g),
        scoring="mse",
        many_to_one=False,
        input_size=1,
        output_size=1,
        baseline=("baseline_mse", synthetic.running_sum_baseline_mse(T)),
        metric="mse",
    )


def larger_total_problem(cfg: LongRangeConfig) -> Problem:
    T = cfg.data.T
    return Problem(
        generate=lambda batch, g: synthetic.larger_total(batch, T, g),
        scoring="ce",
        many_to_one=False,
        input_size=2,
        output_size=2,
        baseline=("baseline_accuracy", synthetic.larger_total_baseline_accuracy()),
        metric="accuracy",
    )


PROBLEMS: dict[str, Callable[[LongRangeConfig], Problem]] = {
    "adding": adding_problem,
    "copy": copy_problem,
    "running_average": running_average_problem,
    "running_sum": running_sum_problem,
    "larger_total": larger_total_problem,
}

MIN_T = {"adding": 2}  # the shortest sequence a generator accepts (default 1)


def checker(name: str) -> Callable[[LongRangeConfig], None]:
    def check(cfg: LongRangeConfig) -> None:
        check_model_config(cfg.model)
        inf = math.inf
        min_T = MIN_T.get(name, 1)
        check_range(
            "data",
            cfg.data,
            {
                "T": (min_T, inf),
                "batch_size": (1, inf),
                "epoch_batches": (1, inf),
                "val_size": (1, inf),
            },
        )
        check_train_config(cfg.train)

    return check


def builder(name: str) -> Callable:
    def build(cfg: LongRangeConfig, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
        return SequenceTask(cfg, PROBLEMS[name](cfg), rank=rank, world_size=world_size)

    return build


# ---- presets ---------------------------------------------------------------------------------
def _config(config_class: type = LongRangeConfig, **sections) -> LongRangeConfig:
    cfg = config_class()
    m, t = cfg.model, cfg.train
    m.cell, m.hidden_size = "lstm", 128
    t.lr, t.warmup_steps, t.schedule, t.clip_norm = 1e-3, 100, "constant", 1.0
    t.max_steps, t.max_minutes, t.eval_every = 20000, 10.0, 250
    t.checkpoint_every, t.log_every = 500, 25
    for section, values in sections.items():
        for key, value in values.items():
            setattr(getattr(cfg, section), key, value)
    return cfg


def _tiny(cfg: LongRangeConfig) -> LongRangeConfig:
    cfg.model.hidden_size = 16
    d, t = cfg.data, cfg.train
    d.batch_size, d.val_size = 16, 64
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 1e-2, 5, 40, 0.0
    t.eval_every, t.checkpoint_every, t.log_every = 20, 20, 5
    return cfg


def adding_default() -> LongRangeConfig:
    """T = 200 with an LSTM, 10 minutes: the issue's target (MSE < 0.01)."""
    return _config(data={"T": 200})


def adding_tiny() -> LongRangeConfig:
    cfg = _tiny(_config(data={"T": 20}))
    return cfg


def copy_default() -> LongRangeConfig:
    return _config(data={"T": 100}, train={"lr": 2e-3})


def copy_tiny() -> LongRangeConfig:
    return _tiny(_config(data={"T": 10}))


def running_average_default() -> RunningAverageConfig:
    """The one-unit linear Elman RNN (identity activation, no biases) learns a in seconds."""
    cfg = _config(
        RunningAverageConfig,
        model={"cell": "elman", "hidden_size": 1, "nonlinearity": "identity", "bias": False},
        data={"T": 20, "batch_size": 32, "val_size": 256},
        train={
            "lr": 0.05,
            "warmup_steps": 10,
            "schedule": "cosine",
            "min_lr_ratio": 0.01,
            "max_steps": 300,
            "max_minutes": 0.0,
            "eval_every": 100,
            "log_every": 10,
            "checkpoint_every": 300,
        },
    )
    return cfg


def running_average_tiny() -> RunningAverageConfig:
    cfg = running_average_default()
    cfg.train.max_steps, cfg.train.eval_every = 40, 20
    return cfg


def running_sum_default() -> LongRangeConfig:
    cfg = running_average_default()
    return _config(
        model={k: getattr(cfg.model, k) for k in ("cell", "hidden_size", "nonlinearity", "bias")},
        data={"T": 20, "batch_size": 32, "val_size": 256},
        train={
            k: getattr(cfg.train, k)
            for k in (
                "lr",
                "warmup_steps",
                "schedule",
                "min_lr_ratio",
                "max_steps",
                "max_minutes",
                "eval_every",
                "log_every",
                "checkpoint_every",
            )
        },
    )


def running_sum_tiny() -> LongRangeConfig:
    cfg = running_sum_default()
    cfg.train.max_steps, cfg.train.eval_every = 40, 20
    return cfg


def larger_total_default() -> LongRangeConfig:
    return _config(
        model={"hidden_size": 32},
        data={"T": 50},
        train={"lr": 3e-3, "max_steps": 2000, "max_minutes": 3.0},
    )


def larger_total_tiny() -> LongRangeConfig:
    return _tiny(_config(data={"T": 20}))


def _spec(name: str, description: str, default, tiny) -> TaskSpec:
    return register(
        TaskSpec(
            name=name,
            description=description,
            presets={"default": default, "tiny": tiny},
            build=builder(name),
            check=checker(name),
            load=loader(type(default()), PROBLEMS[name]),
        )
    )


SPECS = (
    _spec(
        "adding",
        "the adding problem (Hochreiter & Schmidhuber 1997): sum of two marked "
        "values; baseline MSE 1/6",
        adding_default,
        adding_tiny,
    ),
    _spec(
        "copy",
        "the copy task (Arjovsky et al. 2016): recall 10 symbols after T blanks; "
        "baseline CE 10 log 8/(T+20)",
        copy_default,
        copy_tiny,
    ),
    _spec(
        "running_average",
        "toy: y_t = x_t + a y_{t-1}; a one-unit linear Elman RNN recovers a",
        running_average_default,
        running_average_tiny,
    ),
    _spec(
        "running_sum", "toy: the sum of the inputs so far", running_sum_default, running_sum_tiny
    ),
    _spec(
        "larger_total",
        "toy: which of two input channels has the larger total so far",
        larger_total_default,
        larger_total_tiny,
    ),
)
