"""The captioning task's configuration, scores and training task (registered in ``caption.py``).

Scenes (``caption_data``) -> ``caption_model.CaptionModel`` -> cross-entropy of each next word
(teacher forcing, or scheduled sampling: ``sampling.*``), plus λ times the doubly stochastic
penalty with attention. Every training batch is ``data.batch_size`` new scenes, scene i of the
run a pure function of (data.seed, i), so a resumed run sees the same scenes. Validation:
``data.val_scenes`` fixed scenes of the validation images, decoded greedily.

Scores: BLEU-4 (sacreBLEU, against every phrasing of the scene: ``caption_data.phrasings``) and
the scene scores: the (item, cell) pairs ``caption_data.parse`` reads out of the output, against
the scene's, counted over the corpus: precision = right / stated, recall = right / present,
F1 their harmonic mean; overall and by the scene's number of items.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from rnnkit.attention import doubly_stochastic_penalty
from rnnkit.config import option
from rnnkit.data.pairs import BOS, EOS, PAD, SPECIALS, TokenVocab, pad
from rnnkit.decoding import beam_search, decode_batch
from rnnkit.errors import UserError
from rnnkit.seq2seq import sequence_loss
from rnnkit.tasks import caption_data as D
from rnnkit.tasks.base import EpochBatches
from rnnkit.tasks.caption_model import CaptionModel, CaptionModelConfig
from rnnkit.tasks.seq2seq_task import Bleu, Example, SamplingConfig
from rnnkit.train.schedules import check_schedule, teacher_forcing_prob
from rnnkit.train.trainer import TrainConfig, check_range, check_train_config

VAL_SEED, TEST_SEED = 1_000_003, 2_000_003  # the fixed validation and test scenes


@dataclass
class CaptionDataConfig:
    path: str | None = option(
        None, "directory of the Fashion-MNIST IDX files; none: ../shared/data/images/fashion_mnist"
    )
    val_size: int = option(5000, "training images held out for the validation scenes")
    split_seed: int = option(0, "seed of that fixed train/validation split of the images")
    batch_size: int = option(32, "B, scenes per batch")
    epoch_batches: int = option(500, "batches per epoch (every scene is new)")
    val_scenes: int = option(500, "validation scenes (fixed)")
    test_scenes: int = option(1000, "rnnkit eval: scenes per held-out split")
    seed: int = option(1, "seed of the training scenes")


@dataclass
class CaptionDecodeConfig:
    max_len: int = option(40, "the longest caption in words (<eos> included)")


@dataclass
class CaptionConfig:
    model: CaptionModelConfig = field(default_factory=CaptionModelConfig)
    data: CaptionDataConfig = field(default_factory=CaptionDataConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    decode: CaptionDecodeConfig = field(default_factory=CaptionDecodeConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def caption_vocab() -> TokenVocab:
    """The fixed vocabulary: the specials and every word of the caption grammar."""
    return TokenVocab([*SPECIALS, *D.words()], "space")


def load_vocab(saved: object) -> TokenVocab:
    return TokenVocab.from_dict(saved)  # type: ignore[arg-type]


# ---- scores ------------------------------------------------------------------------------------
def scene_sums(hyps: list[str], scenes: list[D.Scene]) -> dict[str, float]:
    """Pairs right, stated and present, overall and by the number of items (``_n``)."""
    sums: dict[str, float] = {}
    for hyp, scene in zip(hyps, scenes, strict=True):
        stated, present = set(D.parse(hyp)), set(scene.items)
        counts = {"right": len(stated & present), "stated": len(stated), "present": len(present)}
        counts["scenes"], counts["exact"] = 1, float(stated == present)
        for key, value in counts.items():
            for name in (key, f"{key}_{len(present)}"):
                sums[name] = sums.get(name, 0.0) + value
    return sums


def scene_metrics(sums: dict[str, float], suffix: str = "") -> dict[str, float]:
    """Precision, recall, F1 and the share of scenes stated exactly, from ``scene_sums``."""
    right = sums.get(f"right{suffix}", 0.0)
    p = right / max(sums.get(f"stated{suffix}", 0.0), 1.0)
    r = right / max(sums.get(f"present{suffix}", 0.0), 1.0)
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    exact = sums.get(f"exact{suffix}", 0.0) / max(sums.get(f"scenes{suffix}", 0.0), 1.0)
    return {"precision": p, "recall": r, "f1": f1, "scenes_exact": exact}


def bleu_sums(hyps: list[str], scenes: list[D.Scene]) -> dict[str, float]:
    refs = [Example("", s.caption, tuple(D.phrasings(s.items))) for s in scenes]
    return Bleu().sums(hyps, refs)


def score(hyps: list[str], scenes: list[D.Scene]) -> dict:
    """BLEU-4 and the scene scores, overall and by number of items (``rnnkit eval``)."""
    sums = scene_sums(hyps, scenes)
    result = {"scenes": len(scenes), **Bleu().metrics(bleu_sums(hyps, scenes))}
    result.update(scene_metrics(sums))
    result["by_items"] = {
        str(n): {"scenes": int(sums[f"scenes_{n}"]), **scene_metrics(sums, f"_{n}")}
        for n in range(D.MIN_ITEMS, D.MAX_ITEMS + 1)
        if sums.get(f"scenes_{n}")
    }
    return result


# ---- batches and decoding ----------------------------------------------------------------------
def caption_batch(scenes: list[D.Scene], vocab: TokenVocab) -> tuple[Tensor, Tensor, Tensor]:
    """(images (B, 1, 84, 84), y_in (T, B) = <bos> y, y_out (T, B) = y <eos>)."""
    ids = [vocab.encode(s.caption) for s in scenes]
    y_in, _ = pad([[BOS, *x] for x in ids])
    y_out, _ = pad([[*x, EOS] for x in ids])
    return D.scene_batch(scenes), y_in, y_out


def cell_items(scenes: list[D.Scene]) -> Tensor:
    """(B, 9): the item in each cell of each scene, in reading order; ``len(ITEMS)`` if empty."""
    out = torch.full((len(scenes), D.GRID * D.GRID), len(D.ITEMS), dtype=torch.long)
    for b, scene in enumerate(scenes):
        for item, cell in scene.items:
            out[b, cell] = item
    return out


@torch.no_grad()
def decode(model: CaptionModel, images: Tensor, vocab: TokenVocab, max_len: int, beam: int = 0):
    """Captions of a batch of images: greedy, or beam search of width ``beam``."""
    was_training = model.training
    model.eval()
    state = model.encode(images)
    options = {"bos_id": BOS, "eos_id": EOS, "max_len": max_len, "device": images.device}
    if beam:
        hyps = beam_search(
            model.step, state, len(images), beam_width=beam, reorder=model.reorder_state, **options
        )
        ids = [h[0][0] for h in hyps]
    else:
        ids = decode_batch(model.step, state, len(images), **options)
    model.train(was_training)
    return [vocab.decode(x) for x in ids]


def scenes_of(cfg: CaptionConfig, split: str, n: int, seed: int) -> list[D.Scene]:
    d = cfg.data
    pool = D.pools(d.path, d.val_size, d.split_seed)[split]
    return [D.make_scene(split, i, seed, pool) for i in range(n)]


# ---- the task ----------------------------------------------------------------------------------
class CaptionTask(EpochBatches):
    """Scenes -> captions (see ``rnnkit.train.task.Task``)."""

    level = "word"
    unit = "scenes"
    selection = ("f1", "max")

    def __init__(self, cfg: CaptionConfig, *, rank=0, world_size=1, vocab=None) -> None:
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        self.vocab = vocab or caption_vocab()
        d = cfg.data
        self.pool = D.pools(d.path, d.val_size, d.split_seed)["train"]
        self.val = scenes_of(cfg, "val", d.val_scenes, VAL_SEED)[rank::world_size]
        self.data_sizes = {"train": d.epoch_batches * d.batch_size, "val": d.val_scenes}
        torch.manual_seed(cfg.train.seed)
        self.model = CaptionModel(len(self.vocab), cfg.model)
        self.device = torch.device("cpu")
        self.epoch, self.step = 0, 0

    def train_batch(self, position: int):
        d = self.cfg.data
        self.step = self.epoch * d.epoch_batches + position
        first = self.step * d.batch_size
        share = range(first + self.rank, first + d.batch_size, self.world_size)
        scenes = [D.make_scene("train", i, d.seed, self.pool) for i in share]
        return (*caption_batch(scenes, self.vocab), cell_items(scenes))

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, int]:
        images, y_in, y_out, items = (t.to(self.device) for t in batch)
        s, m = self.cfg.sampling, self.cfg.model
        eps = teacher_forcing_prob(self.step, s.schedule, k=s.k, steps=s.steps, eps_min=s.eps_min)
        generator = torch.Generator().manual_seed(self.cfg.train.seed * 7919 + self.step)
        aux = bool(m.item_loss) and model.training
        logits, alpha, *cells = model(images, y_in, eps, generator, with_items=aux)
        total, n = sequence_loss(logits, y_out)
        if alpha is not None and m.doubly_stochastic and model.training:
            total = (
                total + m.doubly_stochastic * doubly_stochastic_penalty(alpha, y_out != PAD).sum()
            )
        if aux:  # λ times the mean cross-entropy per cell, on top of the mean per word
            ce = nn.functional.cross_entropy(cells[0].flatten(0, 1), items.flatten())
            total = total + m.item_loss * ce * n
        return total / max(n, 1), n

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        B = self.cfg.data.batch_size
        starts = range(0, len(self.val), B)
        if max_batches:
            starts = starts[:max_batches]
        sums: dict[str, float] = {"nll": 0.0, "tokens": 0.0}
        with torch.no_grad():
            for start in starts:
                scenes = self.val[start : start + B]
                images, y_in, y_out = (t.to(self.device) for t in caption_batch(scenes, self.vocab))
                logits, _ = model(images, y_in)
                total, n = sequence_loss(logits, y_out)
                sums["nll"] += float(total)
                sums["tokens"] += n
                core = getattr(model, "module", model)  # DDP-wrapped or not
                hyps = decode(core, images, self.vocab, self.cfg.decode.max_len)
                for part in (scene_sums(hyps, scenes), bleu_sums(hyps, scenes)):
                    for key, value in part.items():
                        sums[key] = sums.get(key, 0.0) + value
        return sums

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["nll"] / max(sums["tokens"], 1.0)
        scores = scene_metrics(sums)
        return {"loss": loss, **Bleu().metrics(sums), **scores}

    def carried_state(self) -> dict[str, Tensor]:
        return {"epoch": torch.tensor([self.epoch])}

    def load_carried_state(self, tensors: dict[str, Tensor]) -> None:
        if "epoch" in tensors:
            self.start_epoch(int(tensors["epoch"][0]))

    def report(self, result: dict) -> str:
        return (
            f"done: step {result['step']}, validation scene F1 {100 * result['f1']:.2f}% "
            f"(precision {100 * result['precision']:.2f}%, recall {100 * result['recall']:.2f}%)"
            f", BLEU-4 {result['bleu']:.2f} (greedy), loss {result['loss']:.4f} nats/word, "
            f"best F1 {100 * result['best']:.2f}%, {result['seconds'] / 60:.1f} min"
        )


# ---- options and presets -----------------------------------------------------------------------
def check(cfg: CaptionConfig) -> None:
    from rnnkit.tasks.base import check_library_options

    inf = math.inf
    d = cfg.data
    check_range("data", d, {"val_size": (1, 30_000), "batch_size": (1, 4096)})
    check_range("data", d, {"epoch_batches": (1, inf), "val_scenes": (1, inf)})
    check_range("data", d, {"test_scenes": (1, inf)})
    check_range("decode", cfg.decode, {"max_len": (1, 1000)})
    D.load_split(d.path, "train")  # a missing or malformed file: one line, now
    s = cfg.sampling
    try:
        check_schedule(s.schedule, s.k, s.steps, s.eps_min)
    except UserError as e:
        raise UserError(f"option 'sampling': {e}") from None
    check_library_options("model", cfg.model, lambda: CaptionModel(8, cfg.model))
    check_train_config(cfg.train)


def build(cfg: CaptionConfig, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
    if isinstance(vocab, dict):
        vocab = load_vocab(vocab)
    return CaptionTask(cfg, rank=rank, world_size=world_size, vocab=vocab)
