"""Language models over characters or words: the main job.

text -> vocabulary -> token ids (memory-mapped) -> B parallel streams in windows of k steps ->
embedding -> stacked recurrent layers (state carried across windows, detached) -> linear ->
cross-entropy. Sampling steps the network one token at a time with carried state; scoring
gives the total log-probability of a text and its bits per token.

References: Karpathy's char-rnn (2015); Zaremba, Sutskever & Vinyals, "Recurrent neural network
regularization" (2014) for dropout between layers; Press & Wolf, "Using the output embedding to
improve language models" (2017) for weight tying.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.registry import REGISTRY, cell_names
from rnnkit.config import option
from rnnkit.data.batching import StreamBatcher
from rnnkit.data.text import Vocab, apply_split, encode_corpus
from rnnkit.errors import UserError
from rnnkit.layers.torch_compat import BY_NAME
from rnnkit.metrics import perplexity
from rnnkit.train.bptt import detach_state
from rnnkit.train.trainer import TrainConfig, check_range, check_train_config

CELLS = cell_names(output_projection=False)  # from the registry: all but Jordan's
LAYERS = {name: BY_NAME[name] for name in CELLS}


@dataclass
class ModelConfig:
    cell: Literal[CELLS] = option("lstm", "the recurrent cell")  # type: ignore[valid-type]
    embedding_size: int = option(128, "E, the token embedding width")
    hidden_size: int = option(512, "H, the width of each recurrent layer")
    num_layers: int = option(2, "stacked recurrent layers")
    dropout: float = option(0.0, "dropout on embeddings, between layers and before the output")
    tie_weights: bool = option(False, "share the embedding and output weights (needs E == H)")
    peephole: bool = option(False, "LSTM peephole connections")
    layer_norm: bool = option(False, "layer-normalised LSTM (Ba et al. 2016)")
    residual: bool = option(False, "residual connections between stacked layers")
    checkpoint_steps: int = option(
        0, "recompute instead of storing activations, in chunks of this many steps (0: off)"
    )


@dataclass
class DataConfig:
    path: str | None = option(None, "a UTF-8 text file; none: the bundled Shakespeare")
    batch_size: int = option(32, "B, parallel streams (the global batch across processes)")
    bptt_len: int = option(100, "k, the truncated-BPTT window in tokens")
    max_vocab: int = option(20000, "word level: the vocabulary cap (<unk> for the rest)")
    min_count: int = option(1, "word level: words seen fewer times become <unk>")


@dataclass
class LMConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


def check_lm_config(cfg: LMConfig) -> None:
    """Reject impossible options (one line naming the option) before a run directory exists:
    the model's by the library's own checks, the rest here."""
    from rnnkit.tasks.base import check_library_options

    inf = math.inf
    check_range("model", cfg.model, {"embedding_size": (1, inf)})
    check_library_options("model", cfg.model, lambda: LanguageModel(2, cfg.model))
    check_range(
        "data",
        cfg.data,
        {
            "batch_size": (1, inf),
            "bptt_len": (1, inf),
            "max_vocab": (3, inf),
            "min_count": (1, inf),
        },
    )
    check_train_config(cfg.train)


class LanguageModel(nn.Module):
    """Embedding -> stacked recurrent layers -> linear, over time-major token ids.

    ``forward(ids (T, B), state) -> (logits (T, B, V), state)``; ``state`` is the recurrent
    layer's (h_n, or (h_n, c_n) for the LSTM), carried between windows and sampling steps.
    """

    def __init__(self, vocab_size: int, cfg: ModelConfig) -> None:
        super().__init__()
        if cfg.tie_weights and cfg.embedding_size != cfg.hidden_size:
            raise UserError(
                "option 'model.tie_weights' needs model.embedding_size == model.hidden_size, "
                f"got {cfg.embedding_size} and {cfg.hidden_size}"
            )
        supports = REGISTRY[cfg.cell]  # the cell's options, as the cell registry lists them
        options = {key: getattr(cfg, key) for key in ("peephole", "layer_norm")}
        for key, wanted in options.items():
            if wanted and not getattr(supports, key):
                having = " or ".join(cell_names(**{key: True}))
                raise UserError(f"option 'model.{key}' needs model.cell {having}, not {cfg.cell!r}")
        options = {key: value for key, value in options.items() if getattr(supports, key)}
        self.embedding = nn.Embedding(vocab_size, cfg.embedding_size)
        self.rnn = LAYERS[cfg.cell](
            cfg.embedding_size,
            cfg.hidden_size,
            cfg.num_layers,
            dropout=cfg.dropout,
            residual=cfg.residual,
            checkpoint_steps=cfg.checkpoint_steps,
            **options,
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(cfg.hidden_size, vocab_size)
        if cfg.tie_weights:
            self.head.weight = self.embedding.weight

    def forward(self, ids: Tensor, state=None):
        ys, state = self.rnn(self.drop(self.embedding(ids)), state)  # (T, B, H)
        return self.head(self.drop(ys)), state  # (T, B, V)

    def step(self, ids: Tensor, state=None):
        """One token for each sequence, ids (B,) -> logits (B, V): for sampling and scoring."""
        logits, state = self(ids.unsqueeze(0), state)
        return logits[0], state


def state_tensors(state) -> dict[str, Tensor]:
    if state is None:
        return {}
    parts = state if isinstance(state, tuple) else (state,)
    return {f"state.{i}": t for i, t in enumerate(parts)}


def state_from_tensors(tensors: dict[str, Tensor]):
    if not tensors:
        return None
    parts = tuple(tensors[f"state.{i}"] for i in range(len(tensors)))
    return parts if len(parts) > 1 else parts[0]


class LanguageModelTask:
    """Next-token prediction with truncated BPTT over B contiguous streams (see ``Task``)."""

    def __init__(
        self,
        cfg: LMConfig,
        level: Literal["char", "word"],
        cache_dir: Path,
        *,
        rank: int = 0,
        world_size: int = 1,
        vocab: Vocab | None = None,
    ) -> None:
        self.cfg, self.level, self.rank = cfg, level, rank
        ids, self.vocab = encode_corpus(
            cfg.data.path,
            level,
            vocab=vocab,
            max_vocab=cfg.data.max_vocab,
            min_count=cfg.data.min_count,
            cache_dir=cache_dir,
        )
        train_ids, val_ids = apply_split(ids, cache_dir=cache_dir)
        self.data_sizes = {"train": len(train_ids), "val": len(val_ids)}
        B, k = cfg.data.batch_size, cfg.data.bptt_len
        self.train_data = StreamBatcher(train_ids, B, k, rank=rank, world_size=world_size)
        # As many validation streams as fit (at least one window each), a multiple of the
        # process count so that every process takes an equal share.
        val_streams = min(B, max(world_size, len(val_ids) // (k + 1) // world_size * world_size))
        self.val_data = StreamBatcher(val_ids, val_streams, k, rank=rank, world_size=world_size)
        torch.manual_seed(cfg.train.seed)  # the same initial weights in every process
        self.model = LanguageModel(len(self.vocab), cfg.model)
        self.device = torch.device("cpu")
        self.state = None

    # ---- the Task protocol -------------------------------------------------------------
    def to(self, device: torch.device) -> None:
        self.device = device

    def num_train_batches(self) -> int:
        return len(self.train_data)

    def start_epoch(self, epoch: int) -> None:
        self.state = None  # each epoch's streams start from a zero state

    def train_batch(self, position: int):
        return self.train_data.window(position)

    def loss(self, model: nn.Module, batch) -> tuple[Tensor, int]:
        x, y = (t.to(self.device) for t in batch)
        logits, state = model(x, self.state)
        # The next window continues these streams: carry the state, but cut its history.
        self.state = detach_state(state)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return loss, y.numel()

    def evaluate(self, model: nn.Module, max_batches: int) -> dict[str, float]:
        """The first ``max_batches`` windows (0: all) of the validation streams. The streams
        start evenly spaced over the split, so a capped evaluation still samples all of it.
        A progress bar appears when an evaluation takes more than a few seconds."""
        from tqdm import tqdm

        state, nll, tokens = None, 0.0, 0
        n = len(self.val_data) if not max_batches else min(max_batches, len(self.val_data))
        shown = self.cfg.train.progress and self.rank == 0
        windows = tqdm(
            range(n),
            desc="evaluating",
            unit="window",
            leave=False,
            delay=3.0,
            dynamic_ncols=True,
            disable=not shown,
        )
        for i in windows:  # the same carrying as in training
            x, y = (t.to(self.device) for t in self.val_data.window(i))
            logits, state = model(x, state)
            nll += float(F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum"))
            tokens += y.numel()
        return {"nll": nll, "tokens": tokens}

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        loss = sums["nll"] / max(sums["tokens"], 1)
        return {
            "loss": loss,
            "bpc" if self.level == "char" else "bits": loss / math.log(2),
            "ppl": perplexity(loss),
        }

    def carried_state(self) -> dict[str, Tensor]:
        return state_tensors(self.state)

    def load_carried_state(self, tensors: dict[str, Tensor]) -> None:
        self.state = state_from_tensors(tensors)
