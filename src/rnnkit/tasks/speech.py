"""Spoken digit strings: ``rnnkit train speech`` (CTC speech recognition).

Training audio is synthesised offline by espeak-ng (every English voice and variant, except a
held-out ~15% of the variants) and flite (four of its five voices; ``awb`` held out), as
strings of 1-7 digits, cached once as a pool and augmented afresh in every batch
(``speech_data``); features
are 40 log-mel energies every 10 ms (``speech_features``); the model is a stride-2 convolution
and three bidirectional recurrent layers under CTC over the ten digits (``speech_model``).

Validation (each evaluation; it picks the best checkpoint by greedy WER) is a fixed set in the
held-out voices. ``rnnkit eval RUN`` scores the held-out test sets: (a) the held-out synthetic
voices and (b) real speech, Allison Smith's recorded digits (Asterisk's prompts) spliced into
500 strings; ``rnnkit predict RUN file.wav`` transcribes any WAV file (``speech_commands``).

Batches: a batch draws B utterances of one digit count (1-7, chosen per batch) from the pool,
so that little of a batch is padding, by a generator seeded from (data.seed, epoch, position):
a resumed run sees the batches it would have seen.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from rnnkit.errors import UserError
from rnnkit.tasks import TaskSpec, register, speech_commands
from rnnkit.tasks.base import EpochBatches, check_library_options
from rnnkit.tasks.sequence_task import Symbols, batch_seed
from rnnkit.tasks.speech_data import augment, synthesise_pool
from rnnkit.tasks.speech_features import featurise, spec_augment
from rnnkit.tasks.speech_model import BLANK, LABELS, SpeechConfig, SpeechModel
from rnnkit.tasks.speech_voices import FLITE_VOICES, MAX_DIGITS, require, require_festival
from rnnkit.train.trainer import check_range, check_train_config


def word_errors(refs: list[list[int]], hyps: list[list[int]]) -> tuple[int, int, int]:
    """(edit operations, reference digits, wrong strings) summed over the utterances."""
    from rnnkit.ctc import edit_distance

    edits = [edit_distance(r, h) for r, h in zip(refs, hyps, strict=True)]
    return sum(edits), sum(len(r) for r in refs), sum(e > 0 for e in edits)


class SpeechTask(EpochBatches):
    """The spoken-digits task for the trainer (``rnnkit.train.task.Task``)."""

    level = "utterance"
    unit = "utterances"
    selection = ("wer", "min")

    def __init__(self, cfg: SpeechConfig, *, rank: int = 0, world_size: int = 1) -> None:
        self.cfg, d = cfg, cfg.data
        if d.batch_size % world_size:
            raise UserError(
                f"option 'data.batch_size' ({d.batch_size}) must be a multiple of the process "
                f"count ({world_size})"
            )
        B = d.batch_size
        self.local = slice(rank * B // world_size, (rank + 1) * B // world_size)
        cache, progress, share = d.cache_dir(), rank == 0 and cfg.train.progress, d.share()
        held = d.held_out_flite
        self.pool = synthesise_pool(
            "train",
            d.pool,
            d.seed,
            cache,
            share,
            progress,
            d.isolated_share,
            held,
            d.festival_share,
        )
        val = synthesise_pool("val", d.val_size, d.seed, cache, share, progress, 0.0, held)
        rows = slice(rank * len(val) // world_size, (rank + 1) * len(val) // world_size)
        self.val_waves = [val.wave(i) for i in range(len(val))][rows]
        self.val_labels = val.labels[rows]
        counts = np.array([len(x) for x in self.pool.labels])
        self.by_count = {k: np.flatnonzero(counts == k) for k in range(1, MAX_DIGITS + 1)}
        self.by_count = {k: v for k, v in self.by_count.items() if len(v)}
        self.vocab = Symbols(LABELS)
        self.data_sizes = {"train": len(self.pool), "val": len(val)}
        torch.manual_seed(cfg.train.seed)
        self.model = SpeechModel(cfg.model)
        self.device = torch.device("cpu")
        self.epoch = 0

    def train_batch(self, position: int):
        d = self.cfg.data
        rng = np.random.default_rng(batch_seed(d.seed, self.epoch, position))
        counts = sorted(self.by_count)
        rows = self.by_count[counts[int(rng.integers(len(counts)))]]
        picked = rng.choice(rows, size=d.batch_size, replace=len(rows) < d.batch_size)
        waves = [self.pool.wave(int(i)) for i in picked]
        if d.augment:
            waves = [augment(w, rng, d.speed_min, d.speed_max) for w in waves]
        labels = [[k + 1 for k in self.pool.labels[int(i)]] for i in picked]
        warps = None
        if d.augment and d.vtlp > 0:
            warps = list(rng.uniform(1 - d.vtlp, 1 + d.vtlp, size=len(waves)))[self.local]
        x, frames = featurise(waves[self.local], warps)
        if d.augment and d.spec_augment:
            x = spec_augment(x, frames, rng, max_band=d.spec_max_band)
        return x, frames, labels[self.local]

    def _log_probs(self, model: nn.Module, x: Tensor, frames: Tensor):
        return model(x.to(self.device), frames)

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, int]:
        from rnnkit.ctc import ctc_loss

        x, frames, labels = batch
        log_probs, steps = self._log_probs(model, x, frames)
        loss = ctc_loss(log_probs, labels, steps, blank=BLANK, zero_infinity=True)
        return loss, sum(len(y) for y in labels)

    @torch.no_grad()
    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        from rnnkit.ctc import ctc_loss, greedy_decode

        B = self.cfg.data.batch_size
        starts = range(0, len(self.val_waves), B)
        if max_batches:
            starts = starts[:max_batches]
        sums = {"nll": 0.0, "utterances": 0.0, "edits": 0.0, "digits": 0.0, "wrong": 0.0}
        for s in starts:
            x, frames = featurise(self.val_waves[s : s + B])
            labels = [[k + 1 for k in y] for y in self.val_labels[s : s + B]]
            log_probs, steps = self._log_probs(model, x, frames)
            nll = ctc_loss(
                log_probs, labels, steps, blank=BLANK, reduction="none", zero_infinity=True
            )
            hyps = greedy_decode(log_probs, steps.cpu(), blank=BLANK)
            edits, digits, wrong = word_errors(labels, hyps)
            sums["nll"] += float(nll.sum())
            sums["utterances"] += len(labels)
            sums["edits"] += edits
            sums["digits"] += digits
            sums["wrong"] += wrong
        return sums

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        n = max(sums["utterances"], 1.0)
        return {
            "loss": sums["nll"] / n,  # nats per utterance
            "wer": sums["edits"] / max(sums["digits"], 1.0),
            "string_error": sums["wrong"] / n,
        }

    def carried_state(self) -> dict[str, Tensor]:
        return {"epoch": torch.tensor(self.epoch)}

    def load_carried_state(self, tensors: dict[str, Tensor]) -> None:
        self.epoch = int(tensors["epoch"]) if "epoch" in tensors else 0

    def report(self, result: dict) -> str:
        shown = ", ".join(f"{k} {result[k]:.4f}" for k in ("wer", "string_error") if k in result)
        return (
            f"done: step {result['step']}, validation (held-out voices, greedy) {shown}, "
            f"{result['seconds'] / 60:.1f} min"
        )


def check(cfg: SpeechConfig) -> None:
    d = cfg.data
    check_range(
        "data",
        d,
        {
            "pool": (1, math.inf),
            "flite_share": (0.0, 1.0),
            "festival_share": (0.0, 1.0),
            "batch_size": (1, math.inf),
            "epoch_batches": (1, math.inf),
            "isolated_share": (0.0, 1.0),
            "speed_min": (0.5, 1.0),
            "speed_max": (1.0, 2.0),
            "vtlp": (0.0, 0.3),
            "spec_max_band": (0, 20),
            "val_size": (1, math.inf),
            "test_size": (1, math.inf),
            "real_size": (1, math.inf),
        },
    )
    m = cfg.model
    check_range("model", m, {"dropout": (0.0, 1.0), "conv_channels": (1, math.inf)})
    check_library_options("model", m, lambda: SpeechModel(m))
    check_train_config(cfg.train)
    require("espeak-ng")
    if d.held_out_flite not in FLITE_VOICES:
        raise UserError(
            f"option 'data.held_out_flite' must be one of {', '.join(FLITE_VOICES)}, "
            f"got {d.held_out_flite!r}"
        )
    if d.flite and d.flite_share > 0:
        require("flite")
    if d.festival_share > 0:
        if d.share() + d.festival_share > 1:
            raise UserError(
                f"options 'data.flite_share' ({d.share()}) and 'data.festival_share' "
                f"({d.festival_share}) must add up to at most 1"
            )
        require_festival()
    if d.cache and Path(d.cache).exists() and not os.access(d.cache, os.W_OK):
        raise UserError(f"option 'data.cache': {d.cache} is not writable")


def build(cfg: SpeechConfig, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
    return SpeechTask(cfg, rank=rank, world_size=world_size)


def default() -> SpeechConfig:
    """The measured run of docs/speech.md: a bidirectional GRU, 3x128 per direction; 30% of the
    pool said word by word, SpecAugment masks, speed perturbation 0.8-1.25; 50 minutes."""
    cfg = SpeechConfig()
    d, t = cfg.data, cfg.train
    d.isolated_share, d.spec_augment, d.speed_min, d.speed_max = 0.3, True, 0.8, 1.25
    t.lr, t.warmup_steps, t.schedule, t.clip_norm = 2e-3, 200, "cosine", 5.0
    t.max_steps, t.max_minutes, t.eval_every, t.eval_batches = 2400, 50.0, 250, 0
    t.checkpoint_every, t.log_every, t.threads = 250, 20, 1
    return cfg


def tiny() -> SpeechConfig:
    """Seconds: a small pool and model, for tests and for trying the commands."""
    cfg = default()
    m, d, t = cfg.model, cfg.data, cfg.train
    m.hidden_size, m.conv_channels, m.num_layers = 32, 32, 2
    d.pool, d.val_size, d.test_size, d.real_size, d.batch_size = 48, 16, 16, 16, 8
    d.isolated_share = 0.0  # one espeak-ng call an utterance: the tests' pool in seconds
    t.lr, t.warmup_steps, t.max_steps, t.max_minutes = 5e-3, 2, 30, 0.0
    t.eval_every, t.checkpoint_every, t.log_every = 15, 15, 3
    return cfg


SPEC = register(
    TaskSpec(
        name="speech",
        description="spoken digit strings (espeak-ng/flite, real voice held out), BiRNN + CTC",
        presets={"default": default, "tiny": tiny},
        build=build,
        check=check,
        **speech_commands.hooks(),
    )
)
