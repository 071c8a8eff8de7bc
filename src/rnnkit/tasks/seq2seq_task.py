"""What the sequence-to-sequence tasks (dates, g2p, translate) share: the Task for the trainer,
their scores (exact match; phoneme and word error rates; sacreBLEU), decoding a list of inputs,
attention maps and evaluation by source length (loading a run back: ``seq2seq_commands``).

A task module gives a ``Recipe``: how to make its examples (train / val / test, each a list of
``Example``), how its texts are cut into tokens, and its scorer. Everything else is here.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from rnnkit.config import option
from rnnkit.data.pairs import (
    BOS,
    EOS,
    BucketBatcher,
    PairVocab,
    TokenVocab,
    make_batch,
)
from rnnkit.decoding import beam_search, decode_batch
from rnnkit.errors import UserError
from rnnkit.metrics import perplexity
from rnnkit.seq2seq import Seq2Seq, sequence_loss
from rnnkit.tasks.seq2seq_config import check_seq2seq_config
from rnnkit.train.schedules import check_schedule, teacher_forcing_prob
from rnnkit.train.trainer import check_range, check_train_config

LENGTH_BUCKETS = (10, 20, 30, 40, 60, 80)  # source-length bucket edges, in source tokens


@dataclass(frozen=True)
class Example:
    """One pair; ``refs`` holds every acceptable target (e.g. a word's variant pronunciations),
    the first being ``target``."""

    source: str
    target: str
    refs: tuple[str, ...] = ()

    def references(self) -> tuple[str, ...]:
        return self.refs or (self.target,)


@dataclass
class SamplingConfig:
    schedule: Literal["teacher", "free", "linear", "exponential", "inverse_sigmoid"] = option(
        "teacher", "scheduled sampling: teacher forcing throughout, or a decay of its probability"
    )
    k: float = option(1.0, "the schedule's k (exponential: 0 < k < 1; inverse_sigmoid: k >= 1)")
    steps: int = option(1000, "linear: steps to decay teacher forcing to eps_min")
    eps_min: float = option(0.0, "the lowest teacher-forcing probability")


@dataclass
class DecodeConfig:
    max_len: int = option(0, "the longest output in tokens (0: 2 x source length + 10)")
    eval_examples: int = option(0, "validation examples decoded per evaluation (0: all)")


def check_seq2seq_task_config(cfg) -> None:
    """Model, data, sampling, decoding and training options (one-line errors)."""
    check_seq2seq_config(cfg.model)
    check_range("data", cfg.data, {"batch_size": (1, math.inf)})
    check_range("decode", cfg.decode, {"max_len": (0, math.inf), "eval_examples": (0, math.inf)})
    s = cfg.sampling
    try:
        check_schedule(s.schedule, s.k, s.steps, s.eps_min)
    except UserError as e:
        raise UserError(f"option 'sampling': {e}") from None
    check_train_config(cfg.train)


# ---- scores ----------------------------------------------------------------------------------
def edit_distance(a: list[str], b: list[str]) -> int:
    """Levenshtein distance between token lists (substitutions, insertions, deletions)."""
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


class ExactMatch:
    """The share of outputs equal to a reference, character for character."""

    names = ("exact_match",)
    selection = ("exact_match", "max")  # the best checkpoint's metric

    def sums(self, hyps: list[str], examples: list[Example]) -> dict[str, float]:
        right = sum(h in ex.references() for h, ex in zip(hyps, examples, strict=True))
        return {"exact": float(right), "examples": float(len(hyps))}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {"exact_match": sums["exact"] / max(sums["examples"], 1)}


class ErrorRates:
    """Phoneme (token) error rate: edit distance to the closest reference / its length, summed
    over the corpus; word error rate: the share of outputs equal to no reference."""

    names = ("per", "wer")
    selection = ("wer", "min")

    def sums(self, hyps: list[str], examples: list[Example]) -> dict[str, float]:
        edits = ref_tokens = wrong = 0
        for h, ex in zip(hyps, examples, strict=True):
            ht = h.split()
            best = min((edit_distance(ht, r.split()), len(r.split())) for r in ex.references())
            edits += best[0]
            ref_tokens += best[1]
            wrong += best[0] > 0
        return {"edits": edits, "ref_tokens": ref_tokens, "wrong": wrong, "examples": len(hyps)}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        return {
            "per": sums["edits"] / max(sums["ref_tokens"], 1),
            "wer": sums["wrong"] / max(sums["examples"], 1),
        }


class Bleu:
    """sacreBLEU corpus BLEU (Papineni et al. 2002; Post, "A call for clarity in reporting BLEU
    scores", 2018) with its default 13a tokenisation, kept as sufficient statistics (n-gram
    matches and totals, lengths) so that sums over batches and processes give corpus BLEU.
    Every example's references count (``Example.references``); all must have as many."""

    names = ("bleu",)
    selection = ("bleu", "max")

    def sums(self, hyps: list[str], examples: list[Example]) -> dict[str, float]:
        from sacrebleu.metrics import BLEU

        # one stream per reference: every example must have as many (translate: one each)
        refs = [list(r) for r in zip(*(ex.references() for ex in examples), strict=True)]
        stats = BLEU().corpus_score(hyps, refs)
        out = {"sys_len": stats.sys_len, "ref_len": stats.ref_len}
        for n in range(4):
            out[f"match{n + 1}"], out[f"total{n + 1}"] = stats.counts[n], stats.totals[n]
        return out

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        from sacrebleu.metrics import BLEU

        score = BLEU.compute_bleu(
            [int(sums[f"match{n}"]) for n in range(1, 5)],
            [int(sums[f"total{n}"]) for n in range(1, 5)],
            int(sums["sys_len"]),
            int(sums["ref_len"]),
        )
        return {"bleu": score.score}


# ---- the task --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """A sequence-to-sequence task's own parts."""

    name: str
    examples: Callable  # (cfg) -> {"train": [...], "val": [...], "test": [...]}
    source_split: str  # "char", "space" or "word"
    target_split: str
    scorer: Callable[[], object]
    max_vocab: Callable = lambda cfg: 0  # (cfg) -> the vocabulary cap per side (0: none)

    def build(self, cfg, cache_dir=None, rank: int = 0, world_size: int = 1, vocab=None):
        if isinstance(vocab, dict):
            vocab = PairVocab.from_dict(vocab)
        return Seq2SeqTask(cfg, self, vocab=vocab, rank=rank, world_size=world_size)


def encode_examples(vocab: PairVocab, examples: list[Example]) -> tuple[list, list]:
    return (
        [vocab.source.encode(ex.source) for ex in examples],
        [vocab.target.encode(ex.target) for ex in examples],
    )


class Seq2SeqTask:
    """Pairs -> length-bucketed padded batches -> ``Seq2Seq`` -> masked cross-entropy; the
    validation adds greedy decoding and the recipe's scores (see ``rnnkit.train.task.Task``)."""

    level = "pairs"
    unit = "pairs"

    def __init__(
        self, cfg, recipe: Recipe, *, vocab: PairVocab | None = None, rank=0, world_size=1
    ) -> None:
        self.cfg, self.recipe, self.rank, self.world_size = cfg, recipe, rank, world_size
        self.splits = recipe.examples(cfg)
        train = self.splits["train"]
        if vocab is None:
            cap = recipe.max_vocab(cfg)
            vocab = PairVocab(
                TokenVocab.from_texts((ex.source for ex in train), recipe.source_split, cap),
                TokenVocab.from_texts((ex.target for ex in train), recipe.target_split, cap),
            )
        self.vocab = vocab
        self.scorer = recipe.scorer()
        self.selection = self.scorer.selection
        self.train_ids = encode_examples(vocab, train)
        self.val = self.splits["val"]
        if cfg.decode.eval_examples:
            self.val = self.val[: cfg.decode.eval_examples]
        self.val_ids = encode_examples(vocab, self.val)
        self.data_sizes = {"train": len(train), "val": len(self.val)}
        B = cfg.data.batch_size
        self.batcher = BucketBatcher([len(s) for s in self.train_ids[0]], B, seed=cfg.train.seed)
        self.val_batches = BucketBatcher(
            [len(s) for s in self.val_ids[0]], B, shuffle=False
        ).batches
        torch.manual_seed(cfg.train.seed)
        self.model = Seq2Seq(len(vocab.source), len(vocab.target), cfg.model)
        self.device = torch.device("cpu")
        self.epoch, self.step = 0, 0

    # ---- the Task protocol -------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        self.device = device

    def num_train_batches(self) -> int:
        return max(1, len(self.batcher) // self.world_size)

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        self.batcher.epoch(epoch)

    def train_batch(self, position: int):
        # the global step, for the scheduled-sampling probability; exact on resume
        self.step = self.epoch * self.num_train_batches() + position
        index = self.batcher.batches[position * self.world_size + self.rank]
        return make_batch(*self.train_ids, index)

    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, int]:
        b = batch.to(self.device)
        s = self.cfg.sampling
        eps = teacher_forcing_prob(self.step, s.schedule, k=s.k, steps=s.steps, eps_min=s.eps_min)
        generator = torch.Generator().manual_seed(self.cfg.train.seed * 7919 + self.step)
        logits, _ = model(b.src, b.src_lengths, b.tgt_in, eps, generator)
        smoothing = self.cfg.model.label_smoothing if model.training else 0.0
        total, n = sequence_loss(logits, b.tgt_out, smoothing)
        return total / max(n, 1), n

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        n = len(self.val_batches) if not max_batches else min(max_batches, len(self.val_batches))
        sums: dict[str, float] = {"nll": 0.0, "tokens": 0.0}
        for index in self.val_batches[:n]:
            b = make_batch(*self.val_ids, index).to(self.device)
            logits, _ = model(b.src, b.src_lengths, b.tgt_in)
            total, count = sequence_loss(logits, b.tgt_out)
            sums["nll"] += float(total)
            sums["tokens"] += count
            hyps = decode_ids(model, self.vocab, b.src, b.src_lengths, self.cfg.decode.max_len)
            scores = self.scorer.sums(hyps, [self.val[i] for i in index])
            for key, value in scores.items():
                sums[key] = sums.get(key, 0.0) + value
        return sums

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["nll"] / max(sums["tokens"], 1)
        return {"loss": loss, "ppl": perplexity(loss), **self.scorer.metrics(sums)}

    def carried_state(self) -> dict[str, torch.Tensor]:
        # the epoch fixes the batch order; a resumed run must cut the same batches
        return {"epoch": torch.tensor([self.epoch])}

    def load_carried_state(self, tensors: dict[str, torch.Tensor]) -> None:
        if "epoch" in tensors:
            self.start_epoch(int(tensors["epoch"][0]))

    def report(self, result: dict) -> str:
        """The command line's last words after training."""
        scores = ", ".join(f"{k} {result[k]:.4f}" for k in self.scorer.names if k in result)
        return (
            f"done: step {result['step']}, validation loss {result['loss']:.4f} nats/token, "
            f"{scores} (greedy), best {result['best_metric']} {result['best']:.4f}, "
            f"{result['seconds'] / 60:.1f} min"
        )


# ---- decoding --------------------------------------------------------------------------------
def output_limit(max_len: int, src_lengths: torch.Tensor) -> int:
    return max_len or 2 * int(src_lengths.max()) + 10


def decode_ids(model: Seq2Seq, vocab: PairVocab, src, src_lengths, max_len: int = 0) -> list[str]:
    """Greedy outputs of a padded batch, as texts."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = decode_batch(
            model.step,
            model.encode(src, src_lengths),
            src.shape[1],
            bos_id=BOS,
            eos_id=EOS,
            max_len=output_limit(max_len, src_lengths),
            device=src.device,
        )
    model.train(was_training)
    return [vocab.target.decode(ids) for ids in out]


def predict(
    model: Seq2Seq,
    vocab: PairVocab,
    sources: list[str],
    *,
    method: Literal["greedy", "beam", "sample"] = "greedy",
    beam: int = 5,
    n_best: int = 1,
    alpha: float = 0.0,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    max_len: int = 0,
    batch_size: int = 64,
    progress: bool = False,
) -> list[list[tuple[str, float | None]]]:
    """Outputs for a list of inputs, batched: per input ``n_best`` (text, score) pairs (greedy and
    sampling: one, score None); inputs are cut into tokens as in training."""
    from tqdm import tqdm

    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(seed) if seed is not None else None
    order = sorted(range(len(sources)), key=lambda i: len(sources[i]))  # little padding
    results: list = [None] * len(sources)
    src_ids = [vocab.source.encode(s) for s in sources]
    starts = range(0, len(order), batch_size)
    for start in tqdm(starts, disable=not progress, unit="batch", desc="decoding"):
        index = order[start : start + batch_size]
        b = make_batch(src_ids, [[]] * len(src_ids), index).to(device)
        limit = output_limit(max_len, b.src_lengths)
        with torch.no_grad():
            state = model.encode(b.src, b.src_lengths)
            if method == "beam":
                # the memory projected once a source serves its K beams' steps (attention_step)
                hyps = beam_search(
                    model.step,
                    model.prepare(state),
                    len(index),
                    bos_id=BOS,
                    eos_id=EOS,
                    max_len=limit,
                    beam_width=beam,
                    n_best=n_best,
                    alpha=alpha,
                    device=device,
                    reorder=model.reorder_state,
                )
                outs = [[(vocab.target.decode(ids), score) for ids, score in h] for h in hyps]
            else:
                ids = decode_batch(
                    model.step,
                    state,
                    len(index),
                    bos_id=BOS,
                    eos_id=EOS,
                    max_len=limit,
                    greedy=method == "greedy",
                    temperature=temperature,
                    top_k=top_k,
                    top_p=top_p,
                    generator=generator,
                    device=device,
                )
                outs = [[(vocab.target.decode(x), None)] for x in ids]
        for i, out in zip(index, outs, strict=True):
            results[i] = out
    return results


def attention_map(model: Seq2Seq, vocab: PairVocab, source: str, output: str):
    """The attention weights of ``output`` given ``source`` (teacher-forced), as a matrix
    (output tokens + <eos>) × (source tokens + <eos>) with the axis labels; None without
    attention."""
    model.eval()
    device = next(model.parameters()).device
    src, tgt = vocab.source.encode(source), vocab.target.encode(output)
    b = make_batch([src], [tgt], [0]).to(device)
    with torch.no_grad():
        _, alpha = model(b.src, b.src_lengths, b.tgt_in)
    if alpha is None:
        return None
    weights = alpha[:, 0, :].cpu()  # (T, S)
    xlabels = vocab.source.pieces(src) + ["<eos>"]
    ylabels = vocab.target.pieces(tgt) + ["<eos>"]
    return weights, xlabels, ylabels


def source_bucket(n_tokens: int, edges=LENGTH_BUCKETS) -> str:
    """The name of the length bucket of a source of n tokens, e.g. "11-20" or ">80"."""
    low = 1
    for edge in edges:
        if n_tokens <= edge:
            return f"{low}-{edge}"
        low = edge + 1
    return f">{edges[-1]}"


def evaluate_examples(
    model: Seq2Seq,
    vocab: PairVocab,
    examples: list[Example],
    scorer,
    *,
    by_length: bool = True,
    **decode,
) -> tuple[dict, list[str]]:
    """Decode ``examples`` and score them: overall, and per source-length bucket."""
    outs = predict(model, vocab, [ex.source for ex in examples], **decode)
    hyps = [o[0][0] for o in outs]
    result: dict = {"examples": len(examples), **scorer.metrics(scorer.sums(hyps, examples))}
    if by_length:
        groups: dict[str, list[int]] = {}
        for i, ex in enumerate(examples):
            groups.setdefault(source_bucket(len(vocab.source.encode(ex.source))), []).append(i)
        buckets = {}
        for name in sorted(groups, key=lambda k: int(k.lstrip(">").split("-")[0])):
            idx = groups[name]
            part = [examples[i] for i in idx]
            metrics = scorer.metrics(scorer.sums([hyps[i] for i in idx], part))
            buckets[name] = {"examples": len(idx), **metrics}
        result["by_source_length"] = buckets
    return result, hyps
