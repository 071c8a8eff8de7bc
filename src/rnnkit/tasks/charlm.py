"""The character-level language model: ``rnnkit train charlm`` (the main job).

Presets (plain functions returning a fresh config):
- ``default``: the quality run on the bundled Shakespeare, about 10 minutes on 2 CPU cores.
- ``quick``: the quick-start run, a few minutes on 2 CPU cores.
- ``tiny``: seconds; for tests and trying the commands.
"""

from __future__ import annotations

from rnnkit.tasks import TaskSpec, lm_commands, register
from rnnkit.tasks.lm import LanguageModelTask, LMConfig, check_lm_config


def default() -> LMConfig:
    cfg = LMConfig()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.cell, m.embedding_size, m.hidden_size, m.num_layers, m.dropout = "gru", 64, 512, 2, 0.0
    d.batch_size, d.bptt_len = 32, 100
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 3e-3, 50, 950, 10.0
    t.eval_every, t.checkpoint_every, t.eval_batches = 250, 250, 50  # all 32 of Shakespeare
    return cfg


def quick() -> LMConfig:
    cfg = default()
    m, t = cfg.model, cfg.train
    m.hidden_size, m.num_layers = 256, 1
    t.max_steps, t.max_minutes, t.eval_every = 1200, 3.0, 200
    t.checkpoint_every, t.eval_batches = 200, 40
    return cfg


def tiny() -> LMConfig:
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.embedding_size, m.hidden_size, m.num_layers = 16, 32, 1
    d.batch_size, d.bptt_len = 8, 32
    t.max_steps, t.max_minutes, t.warmup_steps, t.lr = 40, 0.0, 5, 1e-2
    t.eval_every, t.checkpoint_every, t.eval_batches, t.log_every = 20, 20, 4, 5
    return cfg


def build(cfg: LMConfig, cache_dir, rank: int = 0, world_size: int = 1, vocab=None):
    return LanguageModelTask(cfg, "char", cache_dir, rank=rank, world_size=world_size, vocab=vocab)


SPEC = register(
    TaskSpec(
        name="charlm",
        description="character-level language model (default data: the bundled Shakespeare)",
        presets={"default": default, "quick": quick, "tiny": tiny},
        build=build,
        check=check_lm_config,
        **lm_commands.hooks(),
    )
)
