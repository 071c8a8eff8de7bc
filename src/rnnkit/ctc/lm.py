"""A trained rnnkit character language model as the ``lm`` of ``beam_search`` (shallow fusion).

``CharLM`` steps the network one character at a time, each beam carrying its own recurrent
state, all beams of all items in one batched step per frame. Its ``start``/``advance`` are the
interface ``rnnkit.ctc.beam_search`` documents; its log-probabilities are over the acoustic
alphabet (the CTC labels), mapped from the LM's vocabulary by character:

- a label whose character the LM knows gets ``log P_lm(char | prefix)``, the network's own
  log-softmax (not renormalised over the alphabet: characters the recogniser cannot emit keep
  their share, so P_lm is the LM's probability of the text itself);
- a label whose character the LM's vocabulary lacks (a character vocabulary has no <unk>) gets
  the floor ``unknown_logp`` (default ``log 1e-4``), and the LM reads past it: its state is not
  advanced by that character;
- the blank's column is never used.

The context before the first character is the run's line start (a newline), as ``rnnkit score``
scores a text. This is the one module of the library that loads a trained run
(``CharLM.from_run``, through ``rnnkit.tasks.runs.load_run``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn


def _map_state(state, fn):
    """Apply fn to every tensor of a recurrent state (a tensor or nested tuples of them)."""
    if state is None:
        return None
    if isinstance(state, Tensor):
        return fn(state)
    return tuple(_map_state(s, fn) for s in state)


def _zip_state(a, b, fn):
    if isinstance(a, Tensor):
        return fn(a, b)
    return tuple(_zip_state(x, y, fn) for x, y in zip(a, b, strict=True))


class CharLM:
    """A character language model stepped per beam (``beam_search``'s ``lm``).

    Args:
        model: a module with ``step(ids (N,), state) -> (logits (N, V), state)`` whose state
            tensors have the batch in dimension 1 (torch's (layers, N, H)), e.g. rnnkit's
            ``LanguageModel``; put in eval mode here.
        stoi: the LM's character -> id.
        alphabet: the CTC labels' characters, one string per label index (the blank's entry
            is ignored; any placeholder).
        blank: the blank's index in ``alphabet``.
        start_ids: the LM ids read before the first character (default: none).
        unknown_logp: the log-probability of a label whose character the LM does not know.
    """

    def __init__(
        self,
        model: nn.Module,
        stoi: dict[str, int],
        alphabet: Sequence[str],
        *,
        blank: int = 0,
        start_ids: Sequence[int] = (),
        unknown_logp: float = math.log(1e-4),
    ) -> None:
        if isinstance(alphabet, str):
            alphabet = list(alphabet)
        if not 0 <= blank < len(alphabet):
            raise ValueError(f"blank must index the alphabet [0, {len(alphabet)}), got {blank}")
        for i, ch in enumerate(alphabet):
            if i != blank and (not isinstance(ch, str) or len(ch) != 1):
                raise ValueError(f"alphabet[{i}] must be one character, got {ch!r}")
        if not math.isfinite(unknown_logp) or unknown_logp > 0:
            raise ValueError(f"unknown_logp must be a finite log-probability, got {unknown_logp}")
        self.model = model.eval()
        self.alphabet, self.blank, self.unknown_logp = list(alphabet), blank, unknown_logp
        ids = [stoi.get(ch, -1) if i != blank else -1 for i, ch in enumerate(self.alphabet)]
        self.unknown = [ch for i, ch in enumerate(self.alphabet) if i != blank and ids[i] < 0]
        self.device = next(model.parameters()).device
        self._ids = torch.tensor(ids, dtype=torch.long)
        self._known = self._ids >= 0
        self._col = self._ids.clamp(min=0).to(self.device)
        self._start = list(start_ids)

    @classmethod
    def from_run(
        cls,
        path,
        alphabet: Sequence[str],
        *,
        blank: int = 0,
        unknown_logp: float = math.log(1e-4),
    ) -> CharLM:
        """The character LM of a ``rnnkit train charlm`` run (its best checkpoint, else the
        last; or a .safetensors file), started at a line start. A run of another task, or a
        word-level LM, is an error naming the path."""
        from rnnkit.tasks.runs import load_run

        run = load_run(path)
        if run.level != "char":
            raise ValueError(f"{path} is a {run.level}-level language model, not a character one")
        stoi = dict(run.vocab.stoi)
        return cls(
            run.model,
            stoi,
            alphabet,
            blank=blank,
            start_ids=run.start_ids(),
            unknown_logp=unknown_logp,
        )

    def _logp(self, logits: Tensor) -> Tensor:
        """LM logits (N, V) -> log-probabilities over the alphabet (N, C)."""
        lp = torch.log_softmax(logits.double(), -1)[:, self._col]
        return torch.where(self._known.to(lp.device), lp, self.unknown_logp)

    @torch.no_grad()
    def start(self, n: int):
        """n copies of the state after the line start, and its next-label log-probabilities."""
        state, logits = None, None
        for i in self._start:
            logits, state = self.model.step(torch.tensor([i], device=self.device), state)
        if logits is None:  # no context: the model's output from a zero state is not defined
            raise ValueError("CharLM needs start_ids (at least one token of context)")
        state = _map_state(state, lambda s: s.expand(s.shape[0], n, *s.shape[2:]).contiguous())
        lp = self._logp(logits).expand(n, -1).contiguous()
        return (state, lp), lp

    @torch.no_grad()
    def advance(self, state, rows, labels):
        """Rows ``rows`` of the state, each advanced by its label (-1 or unknown: a copy)."""
        h, lp = state
        rows_t = torch.as_tensor(np.asarray(rows), dtype=torch.long, device=self.device)
        h = _map_state(h, lambda s: s.index_select(1, rows_t))
        lp = lp.index_select(0, rows_t)
        lab = torch.as_tensor(np.asarray(labels), dtype=torch.long)
        ok = lab >= 0
        ok[ok.clone()] = self._known[lab[ok]]
        if ok.any():
            sub = ok.nonzero()[:, 0].to(self.device)
            ids = self._ids[lab[ok]].to(self.device)
            logits, new = self.model.step(ids, _map_state(h, lambda s: s.index_select(1, sub)))
            h = _zip_state(h, new, lambda s, n: s.index_copy(1, sub, n))
            lp = lp.index_copy(0, sub, self._logp(logits))
        return (h, lp), lp

    def log_prob(self, labels: Sequence[int]) -> float:
        """log P_lm of a label sequence: the sum of its conditionals (what fusion adds, / α)."""
        state, lp = self.start(1)
        total = 0.0
        for k in labels:
            total += float(lp[0, k])
            state, lp = self.advance(state, np.zeros(1, dtype=np.int64), np.array([k]))
        return total
