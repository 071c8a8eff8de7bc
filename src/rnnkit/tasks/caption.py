"""Captioning scenes of Fashion-MNIST items, with and without attention: ``rnnkit train caption``
(Xu et al., "Show, attend and tell", ICML 2015, on a small synthetic scale).

The scenes and their captions are in ``caption_data``, the model in ``caption_model``, the
configuration and training task in ``caption_task``; ``rnnkit predict`` (the caption of a scene
picture, the attention over the image per word), ``rnnkit eval`` (BLEU-4 and the scene scores on
the two held-out splits) and ``rnnkit caption-scene`` (a test scene as a PNG) in
``caption_commands``. The guide: docs/caption.md.

Presets: ``default`` (soft attention over the 7x7 grid, the 30-minute run), ``noattention``
(vector to sequence, the same budget), ``tiny`` (seconds, for tests).
"""

from __future__ import annotations

from rnnkit.tasks import TaskSpec, caption_commands, register
from rnnkit.tasks.caption_task import CaptionConfig, build, check, load_vocab


def default() -> CaptionConfig:
    """Soft attention (gated, doubly stochastic) over the 7x7 grid, an LSTM of 128, the
    auxiliary item loss: 30 minutes on one CPU thread (about 0.24 s of CPU a step of 32
    scenes: some 7,000 steps)."""
    cfg = CaptionConfig()
    m, t = cfg.model, cfg.train
    m.channels, m.embedding_size, m.hidden_size = 16, 32, 128
    m.attention, m.context, m.pool, m.gate, m.doubly_stochastic = (
        "bahdanau",
        "init",
        "mean",
        True,
        0.02,
    )
    # the auxiliary item loss (not in the papers): the CNN learns to name the items faster, and
    # the items' names were all of the errors left (docs/caption.md); 0 gives the papers' model
    m.item_loss = 0.5
    t.lr, t.warmup_steps, t.schedule, t.clip_norm, t.min_lr_ratio = 2e-3, 100, "cosine", 5.0, 0.05
    t.max_steps, t.max_minutes, t.eval_every, t.checkpoint_every = 20_000, 30.0, 250, 250
    t.log_every, t.eval_batches = 25, 0
    t.threads = 1  # small matrices: one thread, and the other core free for the other run
    return cfg


def noattention() -> CaptionConfig:
    """Vector to sequence: the grid's fc vector (256 wide) as the initial state and an input at
    every step, no attention; the same decoder, CNN, item loss and budget as ``default``."""
    cfg = default()
    m = cfg.model
    m.attention, m.context, m.pool, m.gate, m.doubly_stochastic = "none", "both", "fc", False, 0.0
    m.vector_size = 256  # room for up to four (item, cell) pairs: no 64-wide bottleneck
    return cfg


def tiny() -> CaptionConfig:
    """Seconds: for tests and trying the commands."""
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.channels, m.embedding_size, m.hidden_size = 4, 16, 32
    d.val_size, d.batch_size, d.epoch_batches, d.val_scenes, d.test_scenes = 500, 16, 20, 32, 32
    t.max_steps, t.max_minutes, t.warmup_steps, t.lr = 40, 0.0, 5, 1e-2
    t.eval_every, t.checkpoint_every, t.log_every = 20, 20, 5
    return cfg


SPEC = register(
    TaskSpec(
        name="caption",
        description="captions of scenes of Fashion-MNIST items, with soft attention or without",
        presets={"default": default, "noattention": noattention, "tiny": tiny},
        build=build,
        check=check,
        load_vocab=load_vocab,
        **caption_commands.hooks(),
    )
)
