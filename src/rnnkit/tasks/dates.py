"""Dates in human formats to ISO 8601: ``rnnkit train dates`` (a character-level seq2seq task).

"Tuesday, 3rd of March 2020", "3/3/20", "March 3 2020", "03.03.2020", ... -> "2020-03-03".
The examples are generated with the standard library (``datetime``, ``calendar``) from dates in
1950-2049 (two-digit years: 50-99 -> 19xx, 00-49 -> 20xx). A fixed 10% of the *dates* (by a hash
of the ISO date) is held out for the test split and 2% for validation, so no held-out date is
seen in training in any format. Slashes are month/day/year (US), dots day.month.year.

Presets: ``default`` (a few minutes on 2 CPU cores; measured in docs/seq2seq.md) and ``tiny``
(seconds).
"""

from __future__ import annotations

import calendar
import datetime as dt
import random
from dataclasses import dataclass, field

from rnnkit.config import option
from rnnkit.data.pairs import held_out_bucket
from rnnkit.errors import UserError
from rnnkit.tasks import TaskSpec, register, seq2seq_commands
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig
from rnnkit.tasks.seq2seq_task import (
    DecodeConfig,
    ExactMatch,
    Example,
    Recipe,
    SamplingConfig,
    check_seq2seq_task_config,
)
from rnnkit.train.memory import physical_memory
from rnnkit.train.trainer import TrainConfig, check_range

FIRST, LAST = dt.date(1950, 1, 1), dt.date(2049, 12, 31)
TEST_BUCKETS, VAL_BUCKETS = range(0, 10), range(10, 12)  # of held_out_bucket's 100


def ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _fields(d: dt.date) -> dict[str, str]:
    return {
        "d": str(d.day),
        "dd": f"{d.day:02d}",
        "th": ordinal(d.day),
        "m": str(d.month),
        "mm": f"{d.month:02d}",
        "month": calendar.month_name[d.month],
        "mon": calendar.month_abbr[d.month],
        "yyyy": str(d.year),
        "yy": f"{d.year % 100:02d}",
        "weekday": calendar.day_name[d.weekday()],
        "wkd": calendar.day_abbr[d.weekday()],
    }


FORMATS = (
    "{weekday}, {th} of {month} {yyyy}",
    "the {th} of {month} {yyyy}",
    "{th} of {month} {yyyy}",
    "{m}/{d}/{yy}",
    "{m}/{d}/{yyyy}",
    "{mm}/{dd}/{yyyy}",
    "{month} {d} {yyyy}",
    "{month} {d}, {yyyy}",
    "{month} {th}, {yyyy}",
    "{d} {month} {yyyy}",
    "{mon} {d}, {yyyy}",
    "{d} {mon} {yy}",
    "{d} {mon} {yyyy}",
    "{dd}.{mm}.{yyyy}",
    "{d}.{m}.{yy}",
    "{yyyy}-{mm}-{dd}",
    "{yyyy}/{mm}/{dd}",
    "{weekday} {month} {th}, {yyyy}",
    "{wkd}, {d} {mon} {yyyy}",
    "{weekday}, {d} {month} {yyyy}",
)


def render(d: dt.date, fmt: str, case: str = "as is") -> str:
    text = fmt.format(**_fields(d))
    return {"lower": text.lower(), "upper": text.upper()}.get(case, text)


def split_of(d: dt.date) -> str:
    bucket = held_out_bucket(d.isoformat(), salt="dates")
    return "test" if bucket in TEST_BUCKETS else "val" if bucket in VAL_BUCKETS else "train"


def generate(n: int, split: str, seed: int) -> list[Example]:
    """``n`` random (date, format, case) examples whose dates belong to ``split``."""
    rng = random.Random(f"{seed}-{split}")
    span = (LAST - FIRST).days
    out = []
    while len(out) < n:
        d = FIRST + dt.timedelta(days=rng.randrange(span + 1))
        if split_of(d) != split:
            continue
        case = rng.choice(("as is", "as is", "lower", "upper"))
        out.append(Example(render(d, rng.choice(FORMATS), case), d.isoformat()))
    return out


@dataclass
class DatesDataConfig:
    train_examples: int = option(50000, "generated training examples")
    val_examples: int = option(1000, "generated validation examples (held-out dates)")
    test_examples: int = option(5000, "generated test examples (held-out dates)")
    batch_size: int = option(64, "B, pairs per batch")
    seed: int = option(0, "the generator's seed")


@dataclass
class DatesConfig:
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    data: DatesDataConfig = field(default_factory=DatesDataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


EXAMPLE_BYTES = 1000  # about: a generated pair (~230 bytes) and its token ids, in Python objects


def check(cfg: DatesConfig) -> None:
    check_range(
        "data",
        cfg.data,
        {
            "train_examples": (1, float("inf")),
            "val_examples": (1, float("inf")),
            "test_examples": (1, float("inf")),
        },
    )
    d, memory = cfg.data, physical_memory()
    n = d.train_examples + d.val_examples + d.test_examples
    if memory and n * EXAMPLE_BYTES > memory:
        raise UserError(
            f"options 'data.train_examples' {d.train_examples:,}, 'data.val_examples' "
            f"{d.val_examples:,} and 'data.test_examples' {d.test_examples:,} need about "
            f"{n * EXAMPLE_BYTES / 1e9:,.0f} GB of memory; this machine has {memory / 1e9:,.0f} GB"
        )
    check_seq2seq_task_config(cfg)


def examples(cfg: DatesConfig) -> dict[str, list[Example]]:
    d = cfg.data
    return {
        "train": generate(d.train_examples, "train", d.seed),
        "val": generate(d.val_examples, "val", d.seed),
        "test": generate(d.test_examples, "test", d.seed),
    }


def default() -> DatesConfig:
    cfg = DatesConfig()
    m, t = cfg.model, cfg.train
    m.cell, m.embedding_size, m.hidden_size, m.attention = "gru", 32, 128, "bahdanau"
    cfg.decode.max_len = 12
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 3e-3, 50, 1500, 12.0
    t.threads = 1  # small matrices: one thread is faster, and kinder to a shared machine
    t.eval_every, t.checkpoint_every, t.log_every, t.eval_batches = 250, 250, 20, 0
    return cfg


def tiny() -> DatesConfig:
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.embedding_size, m.hidden_size, m.attention_size = 16, 32, 16
    d.train_examples, d.val_examples, d.test_examples, d.batch_size = 512, 64, 64, 32
    t.max_steps, t.max_minutes, t.warmup_steps, t.lr = 40, 0.0, 5, 1e-2
    t.eval_every, t.checkpoint_every, t.eval_batches, t.log_every = 20, 20, 2, 5
    return cfg


RECIPE = Recipe("dates", examples, "char", "char", ExactMatch)

SPEC = register(
    TaskSpec(
        name="dates",
        description="human-readable dates to ISO 8601 (generated; seq2seq with attention)",
        presets={"default": default, "tiny": tiny},
        build=RECIPE.build,
        check=check,
        **seq2seq_commands.hooks(),
    )
)
