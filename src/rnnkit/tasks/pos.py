"""Part-of-speech tagging: ``rnnkit train pos`` (many-to-many, aligned).

Data: the Brown corpus (``../shared/data/tagging/brown.tar.gz`` beside the project by default:
500 files, 57,340 sentences, 1,161,192 tokens; Francis & Kucera 1964/1979, NLTK's distribution
format), or any corpus in that format (``--data DIR_OR_TAR_OR_FILE``; ``rnnkit.tasks.brown``
reads it and splits it by file, 80/10/10 by a hash of the file id), or a CoNLL column file
(``--data.format conll --data.column N``: the tag in column N, the word in column 0).
Tags: ``--data.tagset full | base | universal`` (``rnnkit.tasks.brown`` says exactly what each
does; base is the default).

Model: ``rnnkit.tasks.tagger.Tagger``: word embeddings + a character BiLSTM over each word's
spelling -> stacked BiLSTM -> per-token softmax, or a CRF with ``--model.crf true``.
Metrics: token accuracy, overall and on words unseen in training, beside the
most-frequent-tag baseline on the same split (``rnnkit.tasks.tagger_task``).

Presets: ``default`` (the measured runs of docs/tagging.md, about half an hour on 2 CPU cores)
and ``tiny`` (a few files, seconds).
"""

from __future__ import annotations

import copy
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.tasks import TaskSpec, register, tagger_commands
from rnnkit.tasks.brown import BROWN_FILES, TAGSETS, map_tag, read_corpus, split_of
from rnnkit.tasks.tagger import TaggerConfig
from rnnkit.tasks.tagger_task import TaggingRecipe, check_tagging_config
from rnnkit.train.trainer import TrainConfig, check_range

# ../shared/data/tagging beside the project root (src/rnnkit/tasks/ -> root: parents[3])
BROWN = Path(__file__).resolve().parents[3].parent / "shared/data/tagging/brown.tar.gz"


@dataclass
class PosDataConfig:
    path: str | None = option(
        None,
        "a directory, .tar(.gz) or file of word/tag text (NLTK's Brown format), or a CoNLL "
        "file (format conll); none: ../shared/data/tagging/brown.tar.gz",
    )
    format: Literal["brown", "conll"] = option("brown", "word/tag text, or CoNLL columns")
    column: int = option(1, "conll: the column of the tag (the word is column 0)")
    tagset: Literal[TAGSETS] = option("base", "brown: full, base or universal tags")  # type: ignore[valid-type]
    files: str = option(BROWN_FILES, "brown: the file names read (a regular expression)")
    max_files: int = option(0, "brown: read only the first N files by name (0: all)")
    batch_size: int = option(32, "B, sentences per batch")


@dataclass
class PosConfig:
    model: TaggerConfig = field(default_factory=TaggerConfig)
    data: PosDataConfig = field(default_factory=PosDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def data_path(cfg: PosConfig) -> Path:
    return Path(cfg.data.path) if cfg.data.path else BROWN


def sentences(cfg: PosConfig) -> dict[str, list]:
    """{"train", "val", "test"} -> [(tokens, tags)] as the data options say."""
    d, path = cfg.data, data_path(cfg)
    if d.format == "conll":
        return conll_splits(path, d.column)
    if not cfg.data.path and not BROWN.is_file():
        raise UserError(
            f"the Brown corpus is not at {BROWN}: give a corpus with --data PATH "
            "(a directory or .tar.gz of word/tag files)"
        )
    return read_corpus(path, d.tagset, d.files, d.max_files)


def conll_splits(path: Path, column: int) -> dict[str, list]:
    """A CoNLL column file's sentences (tags as they are), split 80/10/10 by a hash of each
    sentence's words (``brown.split_of``)."""
    from rnnkit.tasks.conll import read_conll

    out: dict[str, list] = {"train": [], "val": [], "test": []}
    for tokens, tags in read_conll(path, column=column, scheme="none", what="option 'data.path'"):
        out[split_of(" ".join(tokens))].append((tokens, tags))
    return out


def check(cfg: PosConfig) -> None:
    check_tagging_config(cfg)
    check_range("data", cfg.data, {"max_files": (0, math.inf), "column": (-math.inf, math.inf)})
    try:
        re.compile(cfg.data.files)
    except re.error as e:
        raise UserError(f"option 'data.files' is not a regular expression: {e}") from None
    if cfg.data.format == "conll" and cfg.data.tagset != "base":
        raise UserError("option 'data.tagset' applies to Brown-format data, not to conll files")


def default() -> PosConfig:
    """Word (100) + character (2 x 50) vectors, one BiLSTM layer of 2 x 150, dropout 0.3:
    about half an hour on 2 CPU cores (docs/tagging.md)."""
    cfg = PosConfig()
    t = cfg.train
    t.optimizer, t.lr, t.warmup_steps, t.schedule, t.min_lr_ratio = (
        "adam",
        2e-3,
        200,
        "cosine",
        0.05,
    )
    t.clip_norm, t.max_steps, t.max_minutes = 5.0, 20000, 27.0
    t.eval_every, t.checkpoint_every, t.log_every, t.eval_batches = 1000, 500, 50, 0
    return cfg


def tiny() -> PosConfig:
    """The first 8 Brown files (2 validation, 2 test) and a small model: seconds (tests)."""
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.word_embedding_size, m.char_embedding_size, m.char_hidden_size, m.hidden_size = 16, 8, 8, 16
    d.max_files, d.batch_size = 8, 16
    m.dropout = 0.1
    t.lr, t.warmup_steps, t.schedule, t.max_steps, t.max_minutes = 2e-2, 5, "constant", 40, 0.0
    t.eval_every, t.checkpoint_every, t.eval_batches, t.log_every = 20, 20, 4, 5
    return cfg


def retag(cfg: PosConfig, tagset: str):
    """``rnnkit eval RUN --tagset base|universal``: a run trained on finer Brown tags scored
    in a coarser set: its predictions mapped (``brown.map_tag``), the gold tags read from the
    corpus in that set (so a foreign word's gold tag is X, which a base tag cannot carry)."""
    finer = {"full": ("base", "universal"), "base": ("universal",), "universal": ()}
    if cfg.data.format != "brown" or tagset not in finer[cfg.data.tagset]:
        can = ", ".join(finer[cfg.data.tagset]) if cfg.data.format == "brown" else "none"
        raise UserError(
            f"--tagset {tagset}: this run's tags ({cfg.data.format}, {cfg.data.tagset}) map "
            f"only to: {can}"
        )
    other = copy.deepcopy(cfg)
    other.data.tagset = tagset
    return sentences(other), functools.partial(map_tag, tagset=tagset)


RECIPE = TaggingRecipe("pos", sentences, retag=retag)

SPEC = register(
    TaskSpec(
        name="pos",
        description="part-of-speech tagging of the Brown corpus (char + word BiLSTM, CRF optional)",
        presets={"default": default, "tiny": tiny},
        build=RECIPE.build,
        check=check,
        **tagger_commands.hooks(),
    )
)
