"""Translation between two languages from any tab-separated file of pairs:
``rnnkit train translate --data pairs.tsv`` (words and punctuation marks as tokens).

Columns: by default the last two of each line (source, target), so both ``source<TAB>target``
and ``id<TAB>source<TAB>target`` files work; ``data.header`` skips a first line of names. A
fixed 5% of the pairs (by a hash of the source sentence) is the test set and 2% the validation
set. Scores: sacreBLEU corpus BLEU (13a tokenisation, cased) against the raw target sentences.

Preset ``bible``: ``../shared/data/translation/bible_en_es.tsv`` beside the project, 30,250
verse pairs English (World English Bible) -> Spanish (Reina-Valera 1909), both public domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rnnkit.config import option
from rnnkit.data.pairs import held_out_bucket, read_tsv, tokenize
from rnnkit.errors import UserError
from rnnkit.tasks import TaskSpec, register, seq2seq_commands
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig
from rnnkit.tasks.seq2seq_task import (
    Bleu,
    DecodeConfig,
    Example,
    Recipe,
    SamplingConfig,
    check_seq2seq_task_config,
)
from rnnkit.train.trainer import TrainConfig, check_range

# ../shared/data/translation beside the project root (src/rnnkit/tasks/ -> root: parents[3])
BIBLE = Path(__file__).resolve().parents[3].parent / "shared/data/translation/bible_en_es.tsv"
TEST_BUCKETS, VAL_BUCKETS = range(0, 5), range(5, 7)


@dataclass
class TranslateDataConfig:
    path: str | None = option(None, "a tab-separated file of source/target pairs (--data)")
    source_column: int = option(-2, "the source's column, from 0 (negative: from the end)")
    target_column: int = option(-1, "the target's column, from 0 (negative: from the end)")
    header: bool = option(False, "skip the file's first line (column names)")
    lowercase: bool = option(False, "lower-case sources and targets")
    max_vocab: int = option(5000, "tokens per side, the rest <unk> (by count in training)")
    max_source_len: int = option(50, "training pairs: at most this many source tokens (0: all)")
    max_target_len: int = option(60, "training pairs: at most this many target tokens (0: all)")
    max_pairs: int = option(0, "use only the first N pairs of the file (0: all)")
    batch_size: int = option(64, "B, pairs per batch")


@dataclass
class TranslateConfig:
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    data: TranslateDataConfig = field(default_factory=TranslateDataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def check(cfg: TranslateConfig) -> None:
    if cfg.data.path is None:
        raise UserError("translate needs --data FILE.tsv (or --preset bible)")
    inf = float("inf")
    check_range(
        "data",
        cfg.data,
        {
            "max_vocab": (5, inf),
            "max_source_len": (0, inf),
            "max_target_len": (0, inf),
            "max_pairs": (0, inf),
        },
    )
    check_seq2seq_task_config(cfg)


def split_of(source: str) -> str:
    bucket = held_out_bucket(source, salt="translate")
    return "test" if bucket in TEST_BUCKETS else "val" if bucket in VAL_BUCKETS else "train"


def examples(cfg: TranslateConfig) -> dict[str, list[Example]]:
    d = cfg.data
    if d.path is None:
        raise UserError("translate needs --data FILE.tsv (or --preset bible)")
    pairs = read_tsv(d.path, d.source_column, d.target_column, d.header)[: d.max_pairs or None]
    out: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for src, tgt in pairs:
        if d.lowercase:
            src, tgt = src.lower(), tgt.lower()
        split = split_of(src)
        if split == "train" and (
            (d.max_source_len and len(tokenize(src, "word")) > d.max_source_len)
            or (d.max_target_len and len(tokenize(tgt, "word")) > d.max_target_len)
        ):
            continue
        out[split].append(Example(src, tgt))
    for split, items in out.items():
        if not items:
            raise UserError(f"{d.path}: the {split} split is empty: give more pairs")
    return out


def default() -> TranslateConfig:
    """Any file of pairs (needs --data); about 30 minutes on 2 CPU cores."""
    cfg = TranslateConfig()
    m, t = cfg.model, cfg.train
    m.cell, m.embedding_size, m.hidden_size, m.attention = "gru", 128, 192, "bahdanau"
    m.dropout = 0.2
    cfg.decode.eval_examples = 400
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 2e-3, 200, 20000, 30.0
    t.eval_every, t.checkpoint_every, t.log_every, t.threads = 1000, 1000, 50, 1
    return cfg


def bible() -> TranslateConfig:
    """English -> Spanish on the Bible verse pairs: 9,000 steps (22 epochs) in at most 90
    minutes (the measured runs: docs/seq2seq.md)."""
    cfg = default()
    cfg.data.path, cfg.data.header = str(BIBLE), True
    cfg.train.max_steps, cfg.train.max_minutes = 9000, 90.0
    return cfg


def tiny() -> TranslateConfig:
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.embedding_size, m.hidden_size, m.attention_size, m.dropout = 16, 32, 16, 0.0
    d.batch_size, d.max_vocab, cfg.decode.eval_examples = 16, 500, 32
    t.max_steps, t.max_minutes, t.warmup_steps, t.lr = 40, 0.0, 5, 1e-2
    t.eval_every, t.checkpoint_every, t.eval_batches, t.log_every = 20, 20, 2, 5
    return cfg


RECIPE = Recipe(
    "translate", examples, "word", "word", Bleu, max_vocab=lambda cfg: cfg.data.max_vocab
)

SPEC = register(
    TaskSpec(
        name="translate",
        description="translation from a tab-separated file of pairs (sacreBLEU; --preset bible)",
        presets={"default": default, "bible": bible, "tiny": tiny},
        build=RECIPE.build,
        check=check,
        **seq2seq_commands.hooks(),
    )
)
