"""The word-level language model: ``rnnkit train wordlm``, with a capped vocabulary, <unk> and
<eos>, reported in perplexity.

Presets: ``default`` (a 2-layer LSTM, about 10 minutes on 2 CPU cores), ``tiny`` (seconds).
"""

from __future__ import annotations

from rnnkit.tasks import TaskSpec, lm_commands, register
from rnnkit.tasks.lm import LanguageModelTask, LMConfig, check_lm_config


def default() -> LMConfig:
    cfg = LMConfig()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.cell, m.embedding_size, m.hidden_size, m.num_layers, m.dropout = "lstm", 256, 256, 2, 0.3
    m.tie_weights = True
    d.batch_size, d.bptt_len, d.max_vocab, d.min_count = 32, 35, 10000, 2
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 3e-3, 100, 1300, 10.0
    t.eval_every, t.checkpoint_every, t.eval_batches = 250, 250, 100  # all 47 of the Bible's
    return cfg


def tiny() -> LMConfig:
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.embedding_size, m.hidden_size, m.num_layers, m.dropout = 16, 16, 1, 0.0
    d.batch_size, d.bptt_len, d.max_vocab = 8, 16, 2000
    t.max_steps, t.max_minutes, t.warmup_steps, t.lr = 30, 0.0, 5, 1e-2
    t.eval_every, t.checkpoint_every, t.eval_batches, t.log_every = 15, 15, 4, 5
    return cfg


def build(cfg: LMConfig, cache_dir, rank: int = 0, world_size: int = 1, vocab=None):
    return LanguageModelTask(cfg, "word", cache_dir, rank=rank, world_size=world_size, vocab=vocab)


SPEC = register(
    TaskSpec(
        name="wordlm",
        description="word-level language model (capped vocabulary, <unk>, <eos>; perplexity)",
        presets={"default": default, "tiny": tiny},
        build=build,
        check=check_lm_config,
        **lm_commands.hooks(),
    )
)
