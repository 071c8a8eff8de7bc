"""Learning to Execute: ``rnnkit train execute`` (Zaremba & Sutskever, arXiv:1410.4615, 2014).

A character-level encoder-decoder LSTM reads a short Python-like program and writes what it
prints, one character at a time::

    j=8584
    for x in range(8):j+=920
    b=(1500+j)
    print((b+7567))                 -> 25011

The programs are generated (``execute_programs``: the grammar, the generator and the
restricted evaluator that computes each answer), seeded, parameterised by ``data.length``
(digits of the numbers) and ``data.nesting`` (operations composed); ``data.family addition``
is the paper's addition task. Training follows a curriculum, ``train.curriculum none | naive
| mix | combined`` (``execute_task``). The curriculum option sits in this task's ``train``
section: ``ExecuteTrainConfig`` is the shared ``TrainConfig`` plus three fields, so that no
shared file changes.

Presets: ``default`` (9-digit addition, the paper's 99% figure, in 60 minutes on one CPU
thread, with location-aware attention), ``paper`` (the same task with the paper's model: no
attention), ``programs`` (length 4, nesting 1: the curricula compared in
benchmarks/execute_curricula.py) and ``tiny`` (seconds, for tests). docs/execute.md has the
commands and what was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.tasks import TaskSpec, register, seq2seq_commands
from rnnkit.tasks.execute_commands import RUN_COMMANDS, predict_one
from rnnkit.tasks.execute_task import ExecuteTask, check_curriculum, examples
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig
from rnnkit.tasks.seq2seq_task import (
    DecodeConfig,
    ExactMatch,
    Recipe,
    SamplingConfig,
    check_seq2seq_task_config,
)
from rnnkit.train.trainer import TrainConfig, check_range

MAX_LENGTH, MAX_NESTING = 20, 8  # beyond these the programs outgrow any sensible model


@dataclass
class ExecuteDataConfig:
    family: Literal["programs", "addition"] = option(
        "programs", "the paper's programs, or its addition task (print((a+b)))"
    )
    length: int = option(4, "digits of the numbers (the paper's length)")
    nesting: int = option(1, "operations composed (the paper's nesting; addition: 1)")
    answer_order: Literal["forward", "reversed"] = option(
        "forward",
        "how the model writes the answer: as printed (the paper), or reversed, ones digit "
        "first, so that a carry is written after the digits it comes from",
    )
    batch_size: int = option(100, "B, programs per batch (generated afresh for every batch)")
    epoch_batches: int = option(1000, "batches that count as one epoch (the data is unending)")
    val_examples: int = option(1000, "validation programs at the target difficulty")
    stage_examples: int = option(
        300, "programs (from the training split) that decide when a curriculum stage is passed"
    )
    seed: int = option(0, "the generator's seed")


@dataclass
class ExecuteTrainConfig(TrainConfig):
    curriculum: Literal["none", "naive", "mix", "combined"] = option(
        "combined", "the paper's strategies: none (its baseline), naive, mix, combined"
    )
    curriculum_threshold: float = option(
        0.95, "naive, combined: the stage's per-character accuracy that passes it"
    )
    curriculum_mix: float = option(0.2, "combined: the share of programs drawn as in mix")
    curriculum_patience: int = option(
        0,
        "naive, combined: also pass a stage after this many evaluations without a better stage "
        "accuracy (the paper's code's second rule; 0: off)",
    )


@dataclass
class ExecuteConfig:
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    data: ExecuteDataConfig = field(default_factory=ExecuteDataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: ExecuteTrainConfig = field(default_factory=ExecuteTrainConfig)


def check(cfg: ExecuteConfig) -> None:
    d = cfg.data
    check_range(
        "data",
        d,
        {
            "length": (1, MAX_LENGTH),
            "nesting": (1, MAX_NESTING),
            "epoch_batches": (1, math.inf),
            "val_examples": (1, math.inf),
            "stage_examples": (1, math.inf),
            "seed": (0, math.inf),
        },
    )
    if d.family == "addition" and d.nesting != 1:
        raise UserError(
            f"option 'data.nesting' is {d.nesting}: the addition family composes nothing "
            "(give 1, or --data.family programs)"
        )
    check_seq2seq_task_config(cfg)
    check_curriculum(cfg.train.curriculum_threshold, cfg.train.curriculum_mix)
    check_range("train", cfg.train, {"curriculum_patience": (0, math.inf)})


def held_out(cfg: ExecuteConfig) -> dict:
    """The fixed held-out programs at the target difficulty (``Recipe.examples``)."""
    d = cfg.data
    return {
        split: examples(
            d.val_examples, d.length, d.nesting, d.family, split, d.seed, d.answer_order
        )
        for split in ("val", "test")
    }


def paper() -> ExecuteConfig:
    """The paper's model on 9-digit addition: an LSTM encoder-decoder without attention, the
    answer written as printed. The paper's 2 x 400 LSTM costs about 1.05 CPU seconds a step
    at batch 100 on 9-digit sums (benchmarks/execute_step_cost.py), some 3,400 steps an hour;
    2 x 128 costs about 0.14 s, some 25,000 steps: many more examples seen, which a
    curriculum needs more than width (docs/execute.md)."""
    cfg = ExecuteConfig()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.cell, m.embedding_size, m.hidden_size = "lstm", 32, 128
    m.encoder_layers, m.decoder_layers, m.bidirectional = 2, 2, False
    m.attention, m.context = "none", "both"
    d.family, d.length, d.nesting, d.batch_size = "addition", 9, 1, 100
    d.val_examples, d.stage_examples = 1000, 300
    cfg.decode.max_len = 12
    t.curriculum = "combined"
    # the time binds first (and the cosine schedule follows the clock): ~25,000 steps at 0.14 s
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 2e-3, 200, 25000, 60.0
    t.threads = 1  # small matrices: one thread is about as fast, and kinder to a shared machine
    t.eval_every, t.checkpoint_every, t.log_every, t.eval_batches = 500, 500, 50, 0
    return cfg


def default() -> ExecuteConfig:
    """9-digit addition, the paper's 99% per-character accuracy in 60 minutes on one CPU thread:
    ``paper`` with a bidirectional encoder, location-aware attention (which can move one digit
    on from where the last step looked) and the answer written ones digit first. Not the
    paper's model; docs/execute.md has both runs."""
    cfg = paper()
    cfg.model.attention, cfg.model.bidirectional = "location", True
    cfg.data.answer_order = "reversed"
    return cfg


def programs() -> ExecuteConfig:
    """Programs of length 4, nesting 1: the four curricula side by side (the paper's model)."""
    cfg = paper()
    d, t = cfg.data, cfg.train
    d.family, d.length, d.nesting = "programs", 4, 1
    cfg.decode.max_len = 12
    t.max_steps, t.max_minutes = 12500, 30.0
    return cfg


def tiny() -> ExecuteConfig:
    cfg = paper()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.embedding_size, m.hidden_size, m.encoder_layers, m.decoder_layers = 16, 32, 1, 1
    d.family, d.length, d.nesting, d.batch_size = "programs", 2, 2, 32
    d.epoch_batches, d.val_examples, d.stage_examples = 20, 64, 32
    t.max_steps, t.max_minutes, t.warmup_steps, t.lr = 40, 0.0, 5, 1e-2
    t.eval_every, t.checkpoint_every, t.eval_batches, t.log_every = 20, 20, 2, 5
    return cfg


@dataclass(frozen=True)
class ExecuteRecipe(Recipe):
    """The seq2seq tasks' recipe (how ``rnnkit predict`` loads a run back), building the
    execute task: batches generated by the curriculum instead of a fixed list."""

    def build(self, cfg, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
        from rnnkit.data.pairs import PairVocab

        if isinstance(vocab, dict):
            vocab = PairVocab.from_dict(vocab)
        return ExecuteTask(cfg, vocab=vocab, rank=rank, world_size=world_size)


RECIPE = ExecuteRecipe("execute", held_out, "char", "char", ExactMatch)

SPEC = register(
    TaskSpec(
        name="execute",
        description="Learning to Execute: generated programs to what they print (curricula)",
        presets={"default": default, "paper": paper, "programs": programs, "tiny": tiny},
        build=RECIPE.build,
        check=check,
        load=seq2seq_commands.load_seq2seq,
        predict=predict_one,
        run_commands=RUN_COMMANDS,
    )
)
