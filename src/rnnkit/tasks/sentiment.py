"""Movie-review sentiment: ``rnnkit train sentiment`` (a sentence -> positive or negative).

Data: ``../shared/data/sentiment/movie_review_snippets.tsv`` beside the project by default:
10,605 sentences of Rotten Tomatoes reviews from the sentence-polarity data of Pang & Lee
("Seeing stars: exploiting class relationships for sentiment categorization with respect to
rating scales", ACL 2005), each with the mean of 20 human ratings in [-4, 4] collected by
Hutto & Gilbert ("VADER: a parsimonious rule-based model for sentiment analysis of social
media text", ICWSM 2014; shipped in PyPI ``vaderSentiment`` 3.3.2, MIT). The label is the
rating's sign; the 37 sentences rated exactly 0 are dropped (10,568 remain: 5,242 positive).
Note the labels are the VADER raters' mean, not Pang & Lee's original per-review polarity, so
figures on this file are close to, not equal with, those published on "MR".

``--data.path FILE`` takes any ``text<TAB>label`` file instead (rules in
``text_classify_data``). Split: a fixed 80/10/10 by a hash of the sentence.

Model (``text_classify_model``): word and/or character embeddings -> BiLSTM/BiGRU -> pooling
over time (``--model.pool last|mean|max|attention``) -> linear -> softmax, mixed with a
naive-Bayes logistic regression over word n-grams fitted when training ends (``--model.ngrams``,
``text_classify_ngrams``; 2 in the default preset);
``--model.init_from WORDLM_RUN`` starts the embedding and the encoder from a trained word
language model. Presets: ``default`` (10 minutes on one CPU thread), ``tiny`` (seconds, for
tests). Measured runs: docs/classification.md.
"""

from __future__ import annotations

from pathlib import Path

from rnnkit.tasks import TaskSpec, register
from rnnkit.tasks.text_classify import (
    TextClassifyConfig,
    TextClassifyTask,
    check_text_classify_config,
    loader,
)
from rnnkit.tasks.text_classify_commands import hooks
from rnnkit.tasks.text_classify_data import TextVocab

# ../shared/data/sentiment beside the project root (src/rnnkit/tasks/ -> root: parents[3])
SNIPPETS = (
    Path(__file__).resolve().parents[3].parent / "shared/data/sentiment/movie_review_snippets.tsv"
)


def data_path(cfg: TextClassifyConfig) -> Path:
    return Path(cfg.data.path) if cfg.data.path else SNIPPETS


def default() -> TextClassifyConfig:
    """A one-layer BiLSTM over 128-wide word embeddings, max-pooled, dropout 0.5; stops at
    10 minutes or 4 epochs after the best validation accuracy, keeping that checkpoint; then
    a naive-Bayes logistic regression over word uni- and bigrams is fitted and mixed in."""
    cfg = TextClassifyConfig()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.level, m.cell, m.embedding_size, m.hidden_size, m.pool = "word", "lstm", 128, 128, "max"
    m.dropout, m.ngrams = 0.5, 2
    d.batch_size, d.min_count = 64, 1
    t.lr, t.weight_decay, t.warmup_steps, t.schedule, t.clip_norm = 2e-3, 0.0, 50, "cosine", 5.0
    t.max_steps, t.max_minutes, t.eval_every = 3000, 10.0, 66  # 132 batches an epoch
    t.patience, t.checkpoint_every, t.log_every = 8, 132, 22  # stop 4 epochs past the best
    return cfg


def tiny() -> TextClassifyConfig:
    """Seconds: small sizes, 30 steps (the tests' preset)."""
    cfg = default()
    m, t = cfg.model, cfg.train
    m.embedding_size, m.hidden_size, m.char_hidden_size, m.attention_size = 16, 16, 8, 8
    m.dropout, m.ngrams = 0.0, 0
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 1e-2, 2, 30, 0.0
    t.eval_every, t.checkpoint_every, t.log_every, t.eval_batches = 15, 15, 5, 2
    t.patience = 0
    return cfg


def build(cfg: TextClassifyConfig, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
    return TextClassifyTask(cfg, data_path(cfg), rank=rank, world_size=world_size, vocab=vocab)


SPEC = register(
    TaskSpec(
        name="sentiment",
        description="movie-review sentences -> positive/negative (BiLSTM, pooling; many-to-one)",
        presets={"default": default, "tiny": tiny},
        build=build,
        check=check_text_classify_config,
        load_vocab=TextVocab.from_dict,
        **hooks("sentiment", loader(TextClassifyConfig), SNIPPETS),
    )
)
