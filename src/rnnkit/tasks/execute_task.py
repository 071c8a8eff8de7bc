"""The execute task for the trainer: programs generated afresh for every batch by the
curriculum, a character-level ``Seq2Seq``, and the paper's two scores.

Curricula (Zaremba & Sutskever 2014, section 4; their code's ``utils/strategies.lua``), over
the difficulties (length, nesting) up to the target (L, N):

- ``none`` (the paper's baseline): every program at the target difficulty (L, N);
- ``naive``: the current stage only, starting at (1, 1); a stage passed raises the length by
  one, and after length L the nesting by one with the length back at 1;
- ``mix``: each program's length uniform in [1, L] and nesting in [1, N];
- ``combined``: each program from ``mix`` with probability ``curriculum_mix`` (the paper's
  code: 1/5), else from ``naive``'s current stage.

A stage is passed when the per-character accuracy on ``data.stage_examples`` programs of that
stage reaches ``curriculum_threshold`` (their code: 95%), measured at every evaluation. Those
programs are drawn from the training split (a fixed set per stage, apart from the batches): the
stage's accuracy steers training and is no result. Held-out programs cannot steer it: the
shortest stages have too few of them, none ever trained on (1-digit addition has 100 programs,
about 10 held out), and a model that had learnt the other 90 stalled below 95% on them.

Scores, over validation programs at the target difficulty: per-character accuracy with
teacher forcing (the paper's measure: each answer character and the end of the answer is
predicted given the true characters before it) and exact match with greedy decoding (the whole
answer right, the model feeding back its own characters).

Held out: a fixed 10% of all programs (by a hash of the text) is the test set, another 10% the
validation set; training never sees a program of either.
"""

from __future__ import annotations

import math
import random

import torch
from torch import nn

from rnnkit.data.pairs import SPECIALS, PairVocab, TokenVocab, held_out_bucket, make_batch
from rnnkit.errors import UserError
from rnnkit.metrics import perplexity
from rnnkit.seq2seq import PAD, Seq2Seq, sequence_loss
from rnnkit.tasks.base import EpochBatches
from rnnkit.tasks.execute_programs import (
    SOURCE_CHARS,
    TARGET_CHARS,
    generate_program,
    run_program,
)
from rnnkit.tasks.seq2seq_task import Example, Seq2SeqTask, decode_ids

STRATEGIES = ("none", "naive", "mix", "combined")
ANSWER_ORDERS = ("forward", "reversed")
TEST_BUCKETS, VAL_BUCKETS = range(0, 10), range(10, 20)  # of held_out_bucket's 100


def vocabulary() -> PairVocab:
    """Fixed: every character a generated program or answer can hold."""
    return PairVocab(
        TokenVocab([*SPECIALS, *sorted(SOURCE_CHARS)], "char"),
        TokenVocab([*SPECIALS, *sorted(TARGET_CHARS)], "char"),
    )


def split_of(program: str) -> str:
    bucket = held_out_bucket(program, salt="execute")
    return "test" if bucket in TEST_BUCKETS else "val" if bucket in VAL_BUCKETS else "train"


def written(answer: str, order: str) -> str:
    """The answer as the model writes it: as printed (``forward``) or ones digit first
    (``reversed``); the same function turns a written answer back into the printed one."""
    if order not in ANSWER_ORDERS:
        raise ValueError(f"order must be one of {', '.join(ANSWER_ORDERS)}, got {order!r}")
    return answer[::-1] if order == "reversed" else answer


def example(
    rng: random.Random, length: int, nesting: int, family: str, split: str, order="forward"
) -> Example:
    """A program of ``split`` at this difficulty and its answer (what running it prints),
    written in ``order``."""
    for _ in range(100_000):
        text = generate_program(rng, length, nesting, family)
        if split_of(text) == split:
            return Example(text, written(str(run_program(text)), order))
    raise UserError(f"execute: no {split} program of length {length} found")


def examples(
    n: int, length: int, nesting: int, family: str, split: str, seed: int, order="forward"
) -> list[Example]:
    """``n`` fixed programs of ``split`` at one difficulty (the same for the same arguments;
    ``order`` changes only how the answers are written)."""
    rng = random.Random(f"{seed}-{split}-{family}-{length}-{nesting}")
    return [example(rng, length, nesting, family, split, order) for _ in range(n)]


def stages(length: int, nesting: int) -> list[tuple[int, int]]:
    """Every difficulty up to (length, nesting), in the naive curriculum's order."""
    return [(l, n) for n in range(1, nesting + 1) for l in range(1, length + 1)]


class Curriculum:
    """Which difficulty each training program has, and the stage it stands at."""

    def __init__(
        self, strategy: str, length: int, nesting: int, mix_share: float, patience: int = 0
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        self.strategy, self.mix_share, self.patience = strategy, mix_share, patience
        self.best, self.stale = -math.inf, 0  # the stage's best accuracy, checks since it rose
        self.stages = stages(length, nesting)
        staged = strategy in ("naive", "combined")
        self.stage = 0 if staged else len(self.stages) - 1

    @property
    def current(self) -> tuple[int, int]:
        return self.stages[self.stage]

    @property
    def at_target(self) -> bool:
        return self.stage == len(self.stages) - 1

    def draw(self, rng: random.Random) -> tuple[int, int]:
        """The (length, nesting) of the next training program."""
        target = self.stages[-1]
        mix = self.strategy == "mix" or (
            self.strategy == "combined" and rng.random() < self.mix_share
        )
        if mix:
            return rng.randint(1, target[0]), rng.randint(1, target[1])
        return self.current

    def advance(self, accuracy: float, threshold: float) -> bool:
        """Pass the stage if ``accuracy`` on it reaches ``threshold``, or (``patience`` > 0)
        if it has not risen above the stage's best for ``patience`` checks; True if it moved."""
        if self.at_target:
            return False
        if accuracy > self.best:
            self.best, self.stale = accuracy, 0
        else:
            self.stale += 1
        if accuracy < threshold and not (self.patience and self.stale >= self.patience):
            return False
        self.stage += 1
        self.best, self.stale = -math.inf, 0
        return True


# ---- scores ----------------------------------------------------------------------------------
def score_batch(model: Seq2Seq, vocab: PairVocab, batch: list[Example], max_len: int, device):
    """Sums for one batch: the loss (nats), the target characters (with the end), those right
    under teacher forcing, the answers right under greedy decoding, the examples."""
    ids = (
        [vocab.source.encode(ex.source) for ex in batch],
        [vocab.target.encode(ex.target) for ex in batch],
    )
    b = make_batch(*ids, range(len(batch))).to(device)
    logits, _ = model(b.src, b.src_lengths, b.tgt_in)
    nll, tokens = sequence_loss(logits, b.tgt_out)
    real = b.tgt_out != PAD
    right = int(((logits.argmax(-1) == b.tgt_out) & real).sum())
    hyps = decode_ids(model, vocab, b.src, b.src_lengths, max_len)
    exact = sum(h == ex.target for h, ex in zip(hyps, batch, strict=True))
    return {"nll": float(nll), "chars": tokens, "right": right, "exact": exact, "n": len(batch)}


def score_examples(model, vocab, items: list[Example], batch_size: int, max_len: int, device):
    """``score_batch``'s sums over a list of examples, in batches."""
    sums: dict[str, float] = {}
    with torch.no_grad():
        for start in range(0, len(items), batch_size):
            part = score_batch(model, vocab, items[start : start + batch_size], max_len, device)
            for key, value in part.items():
                sums[key] = sums.get(key, 0.0) + value
    return sums


def accuracies(sums: dict[str, float]) -> dict[str, float]:
    return {
        "char_acc": sums.get("right", 0.0) / max(sums.get("chars", 0.0), 1),
        "exact_match": sums.get("exact", 0.0) / max(sums.get("n", 0.0), 1),
    }


# ---- the task --------------------------------------------------------------------------------
class ExecuteTask(EpochBatches):
    """Generated programs -> ``Seq2Seq`` -> masked cross-entropy (``rnnkit.train.task.Task``);
    each evaluation may move the curriculum on."""

    level = "pairs"
    unit = "programs"
    selection = ("char_acc", "max")

    def __init__(self, cfg, *, vocab: PairVocab | None = None, rank=0, world_size=1) -> None:
        self.cfg, self.rank, self.world_size = cfg, rank, world_size
        d, t = cfg.data, cfg.train
        self.vocab = vocab or vocabulary()
        self.curriculum = Curriculum(
            t.curriculum, d.length, d.nesting, t.curriculum_mix, t.curriculum_patience
        )
        self.val = examples(
            d.val_examples, d.length, d.nesting, d.family, "val", d.seed, d.answer_order
        )
        self.data_sizes = {"train": d.batch_size * d.epoch_batches, "val": len(self.val)}
        torch.manual_seed(t.seed)
        self.model = Seq2Seq(len(self.vocab.source), len(self.vocab.target), cfg.model)
        self.device = torch.device("cpu")
        self.epoch, self.step = 0, 0
        self.stage_cache: dict[tuple[int, int], list[Example]] = {}

    def stage_examples(self) -> list[Example]:
        """The programs that decide whether the curriculum's current stage is passed: from the
        training split (see the module docstring), made once a stage."""
        d, stage = self.cfg.data, self.curriculum.current
        if stage not in self.stage_cache:
            n = d.stage_examples
            self.stage_cache[stage] = examples(
                n, *stage, d.family, "train", d.seed + 1, d.answer_order
            )
        return self.stage_cache[stage]

    # ---- the Task protocol -------------------------------------------------------------
    def train_batch(self, position: int):
        d = self.cfg.data
        self.step = self.epoch * self.num_train_batches() + position
        rng = random.Random(f"{d.seed}-train-{self.step}-{self.rank}")
        batch = []
        for _ in range(d.batch_size):
            length, nesting = self.curriculum.draw(rng)
            batch.append(example(rng, length, nesting, d.family, "train", d.answer_order))
        sources = [self.vocab.source.encode(ex.source) for ex in batch]
        targets = [self.vocab.target.encode(ex.target) for ex in batch]
        return make_batch(sources, targets, range(len(batch)))

    # the seq2seq tasks' loss: teacher forcing, or scheduled sampling at step ``self.step``
    loss = Seq2SeqTask.loss

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        B, limit = self.cfg.data.batch_size, self.cfg.decode.max_len
        items = self.val[: max_batches * B] if max_batches else self.val
        sums = score_examples(model, self.vocab, items, B, limit, self.device)
        if not self.curriculum.at_target:
            stage = score_examples(model, self.vocab, self.stage_examples(), B, limit, self.device)
            sums.update({f"stage_{k}": v for k, v in stage.items()})
        return sums

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        """The scores; and the curriculum's move, decided on them (the same in every
        process: the sums are all-reduced before)."""
        loss = sums["nll"] / max(sums["chars"], 1)
        out = {"loss": loss, "ppl": perplexity(loss), **accuracies(sums)}
        length, nesting = self.curriculum.current
        out.update({"stage_length": length, "stage_nesting": nesting})
        if "stage_right" in sums:
            stage = accuracies({k.removeprefix("stage_"): v for k, v in sums.items()})
            out["stage_char_acc"] = stage["char_acc"]
        else:
            out["stage_char_acc"] = out["char_acc"]
        self.curriculum.advance(out["stage_char_acc"], self.cfg.train.curriculum_threshold)
        return out

    def carried_state(self) -> dict[str, torch.Tensor]:
        # the epoch fixes the batches; the stage is where the curriculum stands
        c = self.curriculum
        return {
            "epoch": torch.tensor([self.epoch]),
            "stage": torch.tensor([c.stage]),
            "stage_best": torch.tensor([c.best], dtype=torch.float64),
            "stage_stale": torch.tensor([c.stale]),
        }

    def load_carried_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "epoch" in tensors:
            self.start_epoch(int(tensors["epoch"][0]))
        if "stage" in tensors:
            self.curriculum.stage = min(int(tensors["stage"][0]), len(self.curriculum.stages) - 1)
        if "stage_best" in tensors:
            self.curriculum.best = float(tensors["stage_best"][0])
            self.curriculum.stale = int(tensors["stage_stale"][0])

    def report(self, result: dict) -> str:
        """The command line's last words after training."""
        d = self.cfg.data
        length, nesting = self.curriculum.current
        return (
            f"done: step {result['step']}, validation at length {d.length} nesting "
            f"{d.nesting}: per-character accuracy {result['char_acc']:.4f} (teacher forced), "
            f"exact match {result['exact_match']:.4f} (greedy); curriculum "
            f"{self.cfg.train.curriculum} at length {length} nesting {nesting}; best "
            f"char_acc {result['best']:.4f}, {result['seconds'] / 60:.1f} min"
        )


def check_curriculum(threshold: float, mix_share: float) -> None:
    for name, value in (("curriculum_threshold", threshold), ("curriculum_mix", mix_share)):
        if not (math.isfinite(value) and 0 <= value <= 1):
            raise UserError(f"option 'train.{name}' must be in [0, 1], got {value!r}")
