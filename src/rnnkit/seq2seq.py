"""Encoder-decoder (sequence to sequence) networks, with or without attention.

The encoder reads the source x_1..x_S (stacked, optionally bidirectional, any rnnkit cell, padded
batches with lengths) into a memory m_1..m_S and a summary m̄ (the top layer's final state of
each direction, concatenated). The decoder writes the target one token at a time, feeding back
the previous token y_{t-1} (Sutskever, Vinyals & Le, "Sequence to sequence learning with neural
networks", 2014; Cho et al., "Learning phrase representations using RNN encoder-decoder", 2014).

How the decoder sees the source (``context``, used without attention; with attention only the
initial state is chosen by it):

- ``init``: s_0 = tanh(W_b m̄) for every decoder layer (Cho et al. 2014's bridge)
- ``input``: m̄ is concatenated to the decoder's input at every step (Cho et al. 2014)
- ``both``: both of these; ``none``: s_0 = 0 and no context (only sensible with attention)

With attention (``rnnkit.attention``) the context changes at every step:

- ``bahdanau``: c_t = attend(s_{t-1}, m); s_t = cell([E y_{t-1}; c_t], s_{t-1})
- ``luong-dot`` / ``luong-general``: s_t = cell([E y_{t-1}; h̃_{t-1}], s_{t-1}) (input feeding);
  c_t = attend(s_t, m); with ``input_feeding`` off, s_t = cell(E y_{t-1}, s_{t-1})

and in every case the output is h̃_t = tanh(W_c [s_t; c_t]) (c_t: the step's context, if any),
p(y_t | y_<t, x) = softmax(W_o h̃_t). The decoder steps one token at a time with the cells'
``forward(x, state)``: the only loop over time outside ``Recurrent`` (DESIGN.md). Where no
step's input depends on an earlier step's output (no attention, or Luong attention without
input feeding) a teacher-forced decoder runs as a whole sequence instead
(``Decoder.sequence``): each layer one call of ``Recurrent`` (the hand-derived kernel), then
attention for all steps in two batched matrix products: the same function, fewer and larger
matrix products to train with.

The attention kinds and their classes are ``rnnkit.attention.ATTENTION``; each class says
whether the decoder queries it before the recurrent step (Bahdanau) or after it (Luong). The
model takes its options as one object with the fields listed in ``Seq2Seq``; the command line's
dataclass of them is ``rnnkit.tasks.seq2seq_config.Seq2SeqConfig``.

Training: teacher forcing (the true y_{t-1} is fed), or scheduled sampling (Bengio, Vinyals,
Jaitly & Shazeer, "Scheduled sampling for sequence prediction with recurrent neural networks",
NeurIPS 2015): each token is the true one with probability ε, else the model's own previous
argmax; ε follows a schedule (both from ``rnnkit.scheduled_sampling``, which the lab's
teacher-forcing experiment shares). The loss is masked on padding.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.attention import make_attention
from rnnkit.decoding import select_rows
from rnnkit.ensemble import Ensemble  # noqa: F401 (its old home)
from rnnkit.kernels import attention_decoder_run, attention_step
from rnnkit.layers.torch_compat import BY_NAME
from rnnkit.metrics import perplexity  # noqa: F401 (its old home)
from rnnkit.scheduled_sampling import feed_back
from rnnkit.seq2seq_options import (  # noqa: F401 (re-exported: their home was here)
    ATTENTIONS,
    BOS,
    CELLS,
    CONTEXTS,
    EOS,
    PAD,
    UNK,
    check_seq2seq_options,
)


class Encoder(nn.Module):
    """Embedding -> stacked (bi)directional recurrent layers over padded sources with lengths.

    ``forward(src (S, B), lengths (B,)) -> (memory (S, B, M), summary (B, M))``: M = D·H_enc;
    the memory is zero at padding; the summary is the top layer's final state (h) of each
    direction, concatenated, each taken at the sequence's own last step.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        num_layers: int = 1,
        cell: str = "gru",
        bidirectional: bool = True,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD)
        self.rnn = BY_NAME[cell](
            embedding_size, hidden_size, num_layers, dropout=dropout, bidirectional=bidirectional
        )
        self.drop = nn.Dropout(dropout)
        self.directions = 2 if bidirectional else 1
        self.output_size = self.directions * hidden_size

    def forward(self, src: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        memory, final = self.rnn(self.drop(self.embedding(src)), lengths=lengths)  # (S, B, M)
        h = final[0] if isinstance(final, tuple) else final  # (L·D, B, H)
        summary = torch.cat(list(h[-self.directions :]), dim=-1)  # (B, M)
        return memory, summary


class DecoderState(NamedTuple):
    """Everything one decoder step needs, every tensor batch-first (so that beam search can
    reorder rows with ``index_select(0, ·)``): the cells' states, the fed-back h̃_{t-1} (Luong),
    the memory (B, S, M), its precomputed keys, the source mask (B, S), the fixed context, and
    the previous step's attention weights α_{t-1} (B, S) for location-aware attention, and for
    decoding, the memory projected once for the step (``rnnkit.kernels.attention_step``)."""

    layers: tuple
    feed: Tensor | None
    memory: Tensor | None
    keys: Tensor | None
    mask: Tensor | None
    fixed: Tensor | None
    previous: Tensor | None = None
    projected: Any = None  # an attention_step.Projected


class Decoder(nn.Module):
    """One step at a time: ``step(y_prev (B,), state) -> (logits (B, V), state, α (B, S) | None)``.

    See the module docstring for the equations of each ``attention`` and ``context`` mode.

    ``use_kernel`` (default True): whether ``run`` sends teacher-forced steps with attention
    through the hand-derived kernel (``rnnkit.kernels.attention_decoder``) where it applies;
    False steps under autograd (the reference, and for second derivatives).

    ``project_memory`` (default True): whether ``prepare`` projects the memory once per source
    for decoding, so that ``step`` runs ``rnnkit.kernels.attention_step`` where it applies.
    """

    use_kernel = True
    project_memory = True

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        memory_size: int,
        num_layers: int = 1,
        cell: str = "gru",
        attention: str = "bahdanau",
        context: str = "init",
        attention_size: int = 0,
        dropout: float = 0.0,
        input_feeding: bool = True,
    ) -> None:
        super().__init__()
        if attention not in ATTENTIONS:
            raise ValueError(f"attention must be one of {ATTENTIONS}, got {attention!r}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        H = hidden_size
        self.kind, self.context, self.hidden_size = attention, context, H
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=PAD)
        self.attention = (
            None
            if attention == "none"
            else make_attention(attention, H, memory_size, attention_size)
        )
        # Bahdanau's context c_t is computed before the step and is part of its input; Luong's
        # after it, from s_t (feeding h̃_{t-1} into the next step's input, if input_feeding)
        self.attends_before_step = self.attention is not None and self.attention.queries_before_step
        self.input_feeding = (
            input_feeding and self.attention is not None and not self.attends_before_step
        )
        self.fixed_context = self.attention is None and context in ("input", "both")
        if self.attends_before_step or self.fixed_context:
            extra = memory_size  # c_t, or the fixed summary m̄
        else:
            extra = H if self.input_feeding else 0  # h̃_{t-1}, or nothing
        step_context = memory_size if self.attention is not None or self.fixed_context else 0
        self.cells = nn.ModuleList(
            CELLS[cell](embedding_size + extra if l == 0 else H, H) for l in range(num_layers)
        )
        n_states = len(self.cells[0].state_sizes)
        self.bridge = (
            nn.ModuleList(nn.Linear(memory_size, n_states * H) for _ in range(num_layers))
            if context in ("init", "both")
            else None
        )
        self.combine = nn.Linear(H + step_context, H)
        self.head = nn.Linear(H, vocab_size)
        self.drop = nn.Dropout(dropout)

    def init_state(self, memory: Tensor, lengths: Tensor, summary: Tensor) -> DecoderState:
        """The state before the first step, from the encoder's memory (S, B, M) and summary."""
        B, S = summary.shape[0], memory.shape[0]
        layers = []
        for l, cell in enumerate(self.cells):
            if self.bridge is None:
                layers.append(cell.init_state(B, device=summary.device, dtype=summary.dtype))
            else:
                parts = tuple(torch.tanh(self.bridge[l](summary)).chunk(len(cell.state_sizes), -1))
                layers.append(parts if len(parts) > 1 else parts[0])
        feed = memory_b = keys = mask = fixed = None
        if self.attention is not None:
            memory_b = memory.transpose(0, 1)  # (B, S, M)
            keys = self.attention.keys(memory_b)
            mask = torch.arange(S, device=memory.device) < lengths.to(memory.device)[:, None]
            if self.input_feeding:
                feed = summary.new_zeros(B, self.hidden_size)
        elif self.fixed_context:
            fixed = summary
        previous = None
        if self.attention is not None and self.attention.uses_previous:
            previous = memory.new_zeros(B, S)  # α_0: no step has looked anywhere yet
        return DecoderState(tuple(layers), feed, memory_b, keys, mask, fixed, previous)

    def prepare(self, state: DecoderState) -> DecoderState:
        """The state for decoding (eval mode, no gradients): with Bahdanau attention, the memory
        projected once through the weights the context meets (``attention_step.prepare``)."""
        return attention_step.prepare(self, state)

    def step(self, y_prev: Tensor, state: DecoderState):
        if state.projected is not None:
            return attention_step.step(self, y_prev, state)
        h_tilde, h, c, alpha, state = self.hidden_step(y_prev, state)
        return self.output(h_tilde, h, c), state, alpha

    def hidden_step(self, y_prev: Tensor, state: DecoderState):
        """A step up to the top layer's output: (h̃ | None, h, c | None, α | None, state).
        h̃ is computed here only when it is fed back (Luong input feeding); ``output`` makes
        the logits from these, for one step or, stacked, for many at once."""
        layers, feed, memory, keys, mask, fixed, previous = state[:7]
        x = self.drop(self.embedding(y_prev))  # (B, E)
        c = alpha = h_tilde = None
        if self.attends_before_step:
            top = layers[-1]
            query = top[0] if isinstance(top, tuple) else top
            if previous is None:
                c, alpha = self.attention(query, memory, mask, keys)
            else:
                c, alpha = self.attention(query, memory, mask, keys, previous=previous)
                previous = alpha
            x = torch.cat([x, c], dim=-1)
        elif feed is not None:
            x = torch.cat([x, feed], dim=-1)
        elif fixed is not None:
            c = fixed
            x = torch.cat([x, fixed], dim=-1)
        new_layers = []
        for l, cell in enumerate(self.cells):
            y, s = cell(x, layers[l])
            new_layers.append(s)
            x = self.drop(y) if l < len(self.cells) - 1 else y
        h = x  # (B, H)
        if self.attention is not None and not self.attends_before_step:
            c, alpha = self.attention(h, memory, mask, keys)
        if feed is not None:
            h_tilde = feed = self.attentional(h, c)
        state = state._replace(layers=tuple(new_layers), feed=feed, previous=previous)
        return h_tilde, h, c, alpha, state

    def attentional(self, h: Tensor, c: Tensor | None) -> Tensor:
        """h̃ = tanh(W_c [h; c]) (or of h alone without a context), any leading shape."""
        return torch.tanh(self.combine(h if c is None else torch.cat([h, c], dim=-1)))

    def output(self, h_tilde: Tensor | None, h: Tensor, c: Tensor | None) -> Tensor:
        """Logits from ``hidden_step``'s parts, (..., V); h̃ is made here when not given."""
        if h_tilde is None:
            h_tilde = self.attentional(h, c)
        return self.head(self.drop(h_tilde))

    @property
    def parallel(self) -> bool:
        """Whether teacher-forced steps can run as one sequence: no step's input depends on an
        earlier step's output (no Bahdanau attention, no input feeding)."""
        return not self.attends_before_step and not self.input_feeding

    def sequence(self, y_in: Tensor, state: DecoderState) -> tuple[Tensor, Tensor | None]:
        """All steps of a teacher-forced decoder at once (``parallel`` decoders only): the
        inputs y_in (T, B) -> logits (T, B, V), attention weights (T, B, S) or None. The same
        function as T calls of ``step``; each layer runs through ``Recurrent`` (its kernel)."""
        from rnnkit.layers import Recurrent

        if not self.parallel:
            raise ValueError("Decoder.sequence needs no Bahdanau attention and no input feeding")
        layers, _, memory, keys, mask, fixed = state[:6]
        x = self.drop(self.embedding(y_in))  # (T, B, E)
        c = alpha = None
        if fixed is not None:  # the fixed context: an input and an output term at every step
            c = fixed.expand(x.shape[0], *fixed.shape)  # (T, B, M)
            x = torch.cat([x, c], dim=-1)
        for l, cell in enumerate(self.cells):
            ys, _ = Recurrent(cell)(x, layers[l])
            x = self.drop(ys) if l < len(self.cells) - 1 else ys
        h = x  # (T, B, H)
        if self.attention is not None:
            c, alpha = self.attention.attend_all(h.transpose(0, 1), memory, mask, keys)
            c, alpha = c.transpose(0, 1), alpha.transpose(0, 1)  # (T, B, M), (T, B, S)
        return self.output(None, h, c), alpha

    def run(
        self,
        state: DecoderState,
        y_in: Tensor,
        teacher_forcing: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """``Seq2Seq.forward`` from ``init_state``'s state (teacher forcing ε, scheduled
        sampling): y_in (T, B), <bos> first -> logits (T, B, V), weights (T, B, S) | None."""
        if teacher_forcing >= 1.0 and self.parallel:
            return self.sequence(y_in, state)
        if teacher_forcing >= 1.0 and self.use_kernel and attention_decoder_run.applies(self):
            h_tilde, h, c, alpha = attention_decoder_run.run_decoder(self, state, y_in)
            return self.output(h_tilde, h, c), alpha
        gold = y_in.unbind(0)
        if teacher_forcing >= 1.0:
            # the steps need only the recurrent part; the output layer (the largest product
            # with a big vocabulary) runs once over all steps
            parts = []
            for y in gold:
                *part, state = self.hidden_step(y, state)
                parts.append(part)
            h_tilde, h, c, alpha = (
                None if p[0] is None else torch.stack(p)
                for p in map(list, zip(*parts, strict=True))
            )
            return self.output(h_tilde, h, c), alpha
        all_logits, all_alpha = [], []
        y = gold[0]
        for t in range(len(gold)):
            logits, state, alpha = self.step(y, state)
            all_logits.append(logits)
            all_alpha.append(alpha)
            if t + 1 < len(gold):
                y = feed_back(gold[t + 1], logits.detach().argmax(-1), teacher_forcing, generator)
        logits = torch.stack(all_logits)  # (T, B, V)
        alpha = None if all_alpha[0] is None else torch.stack(all_alpha)  # (T, B, S)
        return logits, alpha


class Seq2Seq(nn.Module):
    """Encoder + decoder.

    ``forward(src (S, B), src_lengths (B,), tgt_in (T, B), teacher_forcing=1.0)`` returns the
    logits (T, B, V) and the attention weights (T, B, S) (None without attention). ``tgt_in``
    starts with <bos>; with ``teacher_forcing`` ε < 1 each fed token after the first is the true
    one with probability ε, else the argmax of the previous step's logits (scheduled sampling).

    ``cfg``: any object with these fields (``rnnkit.tasks.seq2seq_config.Seq2SeqConfig`` is the
    command line's), checked by ``check_seq2seq_options``: cell (a name of ``CELLS``),
    embedding_size, hidden_size, encoder_size (per direction; 0: hidden_size / directions),
    encoder_layers, decoder_layers, bidirectional, attention (``ATTENTIONS``), context
    (``CONTEXTS``), attention_size (0: hidden_size), input_feeding, dropout, label_smoothing
    (used by the caller's loss).
    """

    def __init__(self, source_vocab_size: int, target_vocab_size: int, cfg: Any) -> None:
        super().__init__()
        check_seq2seq_options(cfg)
        D = 2 if cfg.bidirectional else 1
        enc = cfg.encoder_size or cfg.hidden_size // D
        self.encoder = Encoder(
            source_vocab_size,
            cfg.embedding_size,
            enc,
            num_layers=cfg.encoder_layers,
            cell=cfg.cell,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout,
        )
        self.decoder = Decoder(
            target_vocab_size,
            cfg.embedding_size,
            cfg.hidden_size,
            self.encoder.output_size,
            num_layers=cfg.decoder_layers,
            cell=cfg.cell,
            attention=cfg.attention,
            context=cfg.context,
            attention_size=cfg.attention_size,
            dropout=cfg.dropout,
            input_feeding=cfg.input_feeding,
        )

    def encode(self, src: Tensor, lengths: Tensor) -> DecoderState:
        memory, summary = self.encoder(src, lengths)
        return self.decoder.init_state(memory, lengths, summary)

    def step(self, y_prev: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """The decoding interface of ``rnnkit.decoding``: ids (B,) -> logits (B, V), state."""
        logits, state, _ = self.decoder.step(y_prev, state)
        return logits, state

    def prepare(self, state: DecoderState) -> DecoderState:
        """``Decoder.prepare``: the state for decoding steps (eval mode, no gradients)."""
        return self.decoder.prepare(state)

    @staticmethod
    def reorder_state(state: DecoderState, index: Tensor) -> DecoderState:
        """Beam search's reorder (``rnnkit.decoding.beam_search``): the rows ``index`` of the
        parts that differ between beams (the cells' states, the fed-back h̃, α_{t-1}); the
        memory, its keys, the mask and the fixed context are the same for every beam of a source
        and are kept as they are, not copied at every step."""
        return state._replace(
            layers=select_rows(state.layers, index),
            feed=select_rows(state.feed, index),
            previous=select_rows(state.previous, index),
        )

    def forward(
        self,
        src: Tensor,
        src_lengths: Tensor,
        tgt_in: Tensor,
        teacher_forcing: float = 1.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        return self.decoder.run(self.encode(src, src_lengths), tgt_in, teacher_forcing, generator)


def sequence_loss(
    logits: Tensor, targets: Tensor, label_smoothing: float = 0.0
) -> tuple[Tensor, int]:
    """Summed cross-entropy over real target tokens (padding, id 0, is masked) and their count.

    Args:
        logits: (T, B, V).
        targets: (T, B) token ids, PAD where there is no token.
        label_smoothing: ε: the target distribution is (1 - ε) on the target plus ε / V on
            every token (padding's column included; torch's convention).
    """
    loss = F.cross_entropy(
        logits.flatten(0, 1),
        targets.flatten(),
        ignore_index=PAD,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    return loss, int((targets != PAD).sum())


def __getattr__(name: str) -> Any:
    # The command line's configuration moved to rnnkit.tasks.seq2seq_config; its old names here
    # stay importable, loaded only when asked for (the library itself never imports a task).
    if name in ("Seq2SeqConfig", "check_seq2seq_config"):
        import importlib

        return getattr(importlib.import_module("rnnkit.tasks.seq2seq_config"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
