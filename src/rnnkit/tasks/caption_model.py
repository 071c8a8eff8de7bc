"""The captioner of ``rnnkit train caption``: a small CNN, then a recurrent decoder.

    x (B, 1, 84, 84) ─ 4 conv layers (3x3, batch norm, ReLU; max-pools 2, 2, 3, none)
        ─> a grid (B, M, 7, 7) of M = 4 · model.channels features (each sees 50x50 pixels)
    memory: the 49 grid vectors a_i (+ a learned embedding of each grid position, so that a
        looked-at vector says where it is), (S = 49, B, M)
    summary ā: ``model.pool`` mean (the mean of the a_i: Xu et al.'s initial state) or fc
        (tanh of a linear map of the whole flattened grid: a CNN's "fc" image vector, which
        keeps where things are; without attention ``model.vector_size`` wide)
    decoder (``rnnkit.seq2seq.Decoder``): an LSTM or GRU writing the caption word by word,

- ``model.attention none``, the vector-to-sequence model (one-to-many; Vinyals et al., "Show
  and tell", 2015): ā is the decoder's initial state (``context init``), an input at every
  step (``input``), or both;
- ``model.attention bahdanau``: soft attention over the 49 grid vectors at every step (Xu et
  al., "Show, attend and tell", ICML 2015), c_t = β_t Σ_i α_ti a_i with the gating scalar
  β_t = σ(w_β · h_{t-1}) (``model.gate``; ``rnnkit.attention.GatedAttention``), trained with
  the doubly stochastic regulariser λ Σ_i (1 − Σ_t α_ti)² (``model.doubly_stochastic`` = λ).

Decoding is ``rnnkit.decoding``'s (greedy, beam search) through ``step`` and ``reorder_state``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from rnnkit.attention import GatedAttention
from rnnkit.config import option
from rnnkit.seq2seq import ATTENTIONS, CELLS, CONTEXTS, Decoder, DecoderState, Seq2Seq
from rnnkit.tasks.caption_data import CANVAS, GRID, ITEMS

POOLS = (2, 2, 3, 1)  # each conv layer's max-pool: 84 -> 42 -> 21 -> 7 -> 7
WIDTHS = (1, 2, 4, 4)  # each conv layer's channels, as multiples of model.channels
SIDE = CANVAS // 12  # the grid's side, 7


@dataclass
class CaptionModelConfig:
    channels: int = option(16, "channels of the first conv layer (then x2, x4, x4 = M)")
    pool: Literal["mean", "fc"] = option(
        "mean", "the image vector: the mean of the grid vectors, or a linear map of the grid"
    )
    vector_size: int = option(
        0, "pool fc without attention: the image vector's width (0: M, the grid's channels)"
    )
    cell: Literal[tuple(CELLS)] = option("lstm", "the decoder's cell")  # type: ignore[valid-type]
    embedding_size: int = option(64, "E, the word embedding width")
    hidden_size: int = option(256, "H, the decoder's width")
    attention: Literal[ATTENTIONS] = option(  # type: ignore[valid-type]
        "bahdanau", "attention over the 7x7 grid at every step (none: vector to sequence)"
    )
    context: Literal[CONTEXTS] = option(  # type: ignore[valid-type]
        "init", "the image vector as the initial state, as an input every step, or both"
    )
    attention_size: int = option(0, "A, Bahdanau's scoring width (0: H)")
    gate: bool = option(True, "attention: the gating scalar β on the context (Xu et al. 2015)")
    doubly_stochastic: float = option(
        0.0, "attention: λ of the penalty λ Σ_i (1 - Σ_t α_ti)² per caption, in the loss"
    )
    dropout: float = option(0.0, "dropout on the embeddings and before the output")
    item_loss: float = option(
        0.0,
        "weight of an auxiliary loss, not in the papers: the item in each of the 9 scene cells "
        "(or none) from the grid pooled to 3x3 (its labels are what the caption states)",
    )


class CaptionModel(nn.Module):
    """CNN grid -> ``Decoder`` (see the module docstring).

    ``forward(images (B, 1, 84, 84), y_in (T, B), teacher_forcing=1.0, generator=None)``
    returns the logits (T, B, V) and the attention weights (T, B, 49) (None without attention).
    """

    def __init__(self, vocab_size: int, cfg: CaptionModelConfig) -> None:
        super().__init__()
        if cfg.channels < 1:
            raise ValueError(f"channels must be >= 1, got {cfg.channels}")
        for name in ("embedding_size", "hidden_size"):
            if getattr(cfg, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(cfg, name)}")
        if not 0.0 <= cfg.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {cfg.dropout}")
        if cfg.item_loss < 0:
            raise ValueError(f"item_loss must be >= 0, got {cfg.item_loss}")
        if cfg.doubly_stochastic < 0:
            raise ValueError(f"doubly_stochastic must be >= 0, got {cfg.doubly_stochastic}")
        if cfg.attention == "none" and cfg.context == "none":
            raise ValueError("context none with attention none leaves the decoder blind")
        if cfg.vector_size and (cfg.pool != "fc" or cfg.attention != "none"):
            raise ValueError("vector_size applies to pool fc without attention: set it to 0")
        if cfg.vector_size < 0:
            raise ValueError(f"vector_size must be >= 0, got {cfg.vector_size}")
        layers: list[nn.Module] = []
        c_in = 1
        for pool, width in zip(POOLS, WIDTHS, strict=True):
            c_out = cfg.channels * width
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out)]
            layers += [nn.ReLU(inplace=True)] + ([nn.MaxPool2d(pool)] if pool > 1 else [])
            c_in = c_out
        self.cnn = nn.Sequential(*layers)
        M, S = c_in, SIDE * SIDE
        self.position = nn.Parameter(torch.zeros(S, 1, M))  # learned, one vector per cell
        vector = cfg.vector_size or M  # the width of the image vector (and, with attention, M)
        self.fc = nn.Linear(S * M, vector) if cfg.pool == "fc" else None
        self.decoder = Decoder(
            vocab_size,
            cfg.embedding_size,
            cfg.hidden_size,
            vector,
            cell=cfg.cell,
            attention=cfg.attention,
            context=cfg.context,
            attention_size=cfg.attention_size,
            dropout=cfg.dropout,
        )
        # the auxiliary head: the 7x7 grid averaged into the scene's 3x3 cells (bins of 3 grid
        # positions, overlapping by one), each cell's item or "empty" (the last class)
        self.items = nn.Linear(M, len(ITEMS) + 1) if cfg.item_loss else None
        if cfg.gate and self.decoder.attention is not None:
            self.decoder.attention = GatedAttention(self.decoder.attention, cfg.hidden_size)

    def grid(self, images: Tensor) -> Tensor:
        """The memory (S, B, M): the grid vectors in reading order, plus their positions."""
        return self._memory(self.cnn(images))

    def _memory(self, f: Tensor) -> Tensor:
        return f.flatten(2).permute(2, 0, 1) + self.position  # (B, M, 7, 7) -> (S, B, M)

    def encode(self, images: Tensor) -> DecoderState:
        return self._encode(self.cnn(images))

    def _encode(self, f: Tensor) -> DecoderState:
        memory = self._memory(f)
        S, B, _ = memory.shape
        if self.fc is None:
            summary = memory.mean(0)  # (B, M)
        else:
            summary = torch.tanh(self.fc(memory.transpose(0, 1).flatten(1)))
        lengths = torch.full((B,), S, dtype=torch.long, device=memory.device)
        return self.decoder.init_state(memory, lengths, summary)

    def forward(
        self,
        images: Tensor,
        y_in: Tensor,
        teacher_forcing: float = 1.0,
        generator: torch.Generator | None = None,
        with_items: bool = False,
    ):
        """(logits, α); with ``with_items`` also the auxiliary head's logits (B, 9, 11)."""
        f = self.cnn(images)
        logits, alpha = self.decoder.run(self._encode(f), y_in, teacher_forcing, generator)
        if not with_items:
            return logits, alpha
        if self.items is None:
            raise ValueError("with_items needs the auxiliary head: item_loss > 0")
        cells = nn.functional.adaptive_avg_pool2d(f, GRID).flatten(2).transpose(1, 2)
        return logits, alpha, self.items(cells)

    def step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """The decoding interface of ``rnnkit.decoding``: ids (B,) -> logits (B, V), state."""
        logits, state, _ = self.decoder.step(y_prev, state)
        return logits, state

    reorder_state = staticmethod(Seq2Seq.reorder_state)
