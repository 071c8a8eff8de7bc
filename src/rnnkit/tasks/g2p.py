"""Grapheme to phoneme: a word's letters to its pronunciation, ``rnnkit train g2p``.

Data: the CMU Pronouncing Dictionary (``../shared/data/g2p/cmudict.dict`` beside the project by
default; BSD-style licence in ``../shared/data/g2p/LICENSE``, which goes with any copy). A line is
``word PH ON EMES``, alternative pronunciations as ``word(2) ...``, ``#`` starts a comment
(and ``;;;`` a comment line, in older releases). Stress
digits are removed (AH0 -> AH), leaving the 39 phonemes of Rao et al. 2015's setting.

Split: a fixed 10% of the *words* (by a hash of the word) is the test set and 2% the validation
set; a word's every pronunciation goes with it. Training uses each (word, pronunciation) pair;
scoring counts an output right if it equals any of the word's pronunciations: word error rate
(WER, the share of words wrong) and phoneme error rate (PER, edit distance to the closest
pronunciation over its length, summed over the corpus).

Anchor: Rao, Peng, Sak & Beaufays, "Grapheme-to-phoneme conversion using long short-term memory
recurrent neural networks", ICASSP 2015: 25.8% WER with a deep bidirectional LSTM with CTC,
21.3% combined with an n-gram model (their split of CMUdict, not this one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from rnnkit.config import option
from rnnkit.data.pairs import held_out_bucket
from rnnkit.data.text import read_text
from rnnkit.errors import UserError
from rnnkit.tasks import TaskSpec, register, seq2seq_commands
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig
from rnnkit.tasks.seq2seq_task import (
    DecodeConfig,
    ErrorRates,
    Example,
    Recipe,
    SamplingConfig,
    check_seq2seq_task_config,
)
from rnnkit.train.trainer import TrainConfig, check_range

# ../shared/data/g2p beside the project root (src/rnnkit/tasks/ -> root: parents[3])
DEFAULT_PATH = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "g2p" / "cmudict.dict"
)
TEST_BUCKETS, VAL_BUCKETS = range(0, 10), range(10, 12)
_VARIANT = re.compile(r"\(\d+\)$")


def read_cmudict(path: str | Path) -> dict[str, list[str]]:
    """{word: [pronunciation, ...]} in file order; pronunciations as space-separated phonemes
    without stress digits, duplicates (after removing stress) dropped.

    Raises:
        UserError: a missing file, or a line with a word but no phonemes (file:line).
    """
    path = Path(path)
    try:
        text = read_text(path)  # missing, a directory, a FIFO, binary, not UTF-8: one line
    except UserError as e:
        raise UserError(f"CMUdict file (option 'data.path'): {e}") from None
    prons: dict[str, list[str]] = {}
    for n, line in enumerate(text.split("\n"), 1):
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith(";;;"):  # older releases' comment lines
            continue
        word, *phones = line.split()
        if not phones:
            raise UserError(f"{path}:{n}: expected 'word PH ON EMES', got {line!r}")
        word = _VARIANT.sub("", word).lower()
        pron = " ".join(p.rstrip("012") for p in phones)
        variants = prons.setdefault(word, [])
        if pron not in variants:
            variants.append(pron)
    if not prons:
        raise UserError(f"{path}: no pronunciations found")
    return prons


def split_of(word: str) -> str:
    bucket = held_out_bucket(word, salt="g2p")
    return "test" if bucket in TEST_BUCKETS else "val" if bucket in VAL_BUCKETS else "train"


@dataclass
class G2PDataConfig:
    path: str | None = option(None, "a CMUdict-format file; none: ../shared/data/g2p/cmudict.dict")
    batch_size: int = option(64, "B, pairs per batch")
    max_words: int = option(0, "use only the first N words of the file (0: all)")


@dataclass
class G2PConfig:
    model: Seq2SeqConfig = field(default_factory=Seq2SeqConfig)
    data: G2PDataConfig = field(default_factory=G2PDataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def check(cfg: G2PConfig) -> None:
    check_range("data", cfg.data, {"max_words": (0, float("inf"))})
    check_seq2seq_task_config(cfg)


def examples(cfg: G2PConfig) -> dict[str, list[Example]]:
    prons = read_cmudict(cfg.data.path or DEFAULT_PATH)
    words = list(prons)[: cfg.data.max_words or None]
    out: dict[str, list[Example]] = {"train": [], "val": [], "test": []}
    for word in words:
        split, variants = split_of(word), prons[word]
        if split == "train":
            out["train"] += [Example(word, p) for p in variants]
        else:
            out[split].append(Example(word, variants[0], tuple(variants)))
    for split, items in out.items():
        if not items:
            raise UserError(f"g2p: the {split} split is empty: give more words (data.max_words)")
    return out


def default() -> G2PConfig:
    """One hour of training on one core, for a WER of 25% or less (measured: docs/seq2seq.md)."""
    cfg = G2PConfig()
    m, t = cfg.model, cfg.train
    m.cell, m.embedding_size, m.hidden_size, m.attention = "gru", 64, 256, "bahdanau"
    m.encoder_layers, m.dropout, m.label_smoothing = 2, 0.1, 0.1
    cfg.decode.max_len, cfg.decode.eval_examples = 30, 2000
    # 47,000 steps: ~0.075 s a step on one core (batch 64) fills the 60 minutes with the
    # evaluations, so the cosine schedule ends about when the time limit comes
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 2e-3, 200, 47000, 60.0
    t.eval_every, t.checkpoint_every, t.log_every, t.threads = 1000, 1000, 50, 1
    # decoupled weight decay and a moving average of the weights: 23-24% WER on the test
    # words where the average alone reached 26-27% (docs/seq2seq.md)
    t.weight_decay, t.ema = 0.1, 0.999
    return cfg


def quick() -> G2PConfig:
    """Ten minutes: a first look at the numbers."""
    cfg = default()
    cfg.model.encoder_layers, cfg.model.dropout = 1, 0.0
    t = cfg.train
    t.max_steps, t.max_minutes, t.eval_every, t.checkpoint_every = 6000, 10.0, 500, 500
    return cfg


def tiny() -> G2PConfig:
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.embedding_size, m.hidden_size, m.attention_size, m.encoder_layers = 16, 32, 16, 1
    d.batch_size, cfg.decode.eval_examples = 32, 64
    t.max_steps, t.max_minutes, t.warmup_steps, t.lr = 40, 0.0, 5, 1e-2
    t.eval_every, t.checkpoint_every, t.eval_batches, t.log_every = 20, 20, 2, 5
    t.ema = 0.0  # an average over 1,000 steps would be the initial weights after 40
    return cfg


RECIPE = Recipe("g2p", examples, "char", "space", ErrorRates)

SPEC = register(
    TaskSpec(
        name="g2p",
        description="CMUdict word -> phonemes (PER, WER on a fixed held-out 10% of words)",
        presets={"default": default, "quick": quick, "tiny": tiny},
        build=RECIPE.build,
        check=check,
        **seq2seq_commands.hooks(),
    )
)
