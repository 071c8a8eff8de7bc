"""The text classifier: embeddings -> bidirectional recurrent encoder -> pooling -> softmax.

For a sentence of T tokens w_1..w_T:

    x_t = [E w_t ; c(w_t)]                     word embedding and/or character encoding
    y_t = [→h_t ; ←h_t]                         a (stacked) bidirectional rnnkit layer
    s   = pool(y_1..y_T)                        last, mean, max or attention
    p(k | sentence) = softmax(W dropout(s) + b)_k

- ``word_dropout`` p (training only): each word id is replaced by <unk>'s with probability p,
  so the model cannot lean on one rare word (Iyyer et al. 2015, "Deep unordered composition
  rivals syntactic methods for text classification", drop whole words for the same reason).
- ``level``: ``word`` (x_t = E w_t), ``char`` (x_t = c(w_t): the final states of a
  bidirectional recurrent layer over the word's characters, both directions concatenated, so
  a word unseen in training still has a vector from its spelling; Ling et al. 2015), ``both``
  (the two concatenated; Lample et al. 2016).
- Variable lengths: the encoder is given the real lengths (``lengths=``), so padding never
  changes a real output or final state (rnnkit's layers; the reverse direction reads only the
  real part).
- ``pool``: ``last`` s = [→h_T ; ←h_1] (each direction's final state at the real end),
  ``mean`` s = (1/T) Σ_t y_t over real steps, ``max`` s_i = max_t y_{t,i} over real steps,
  ``attention`` u_t = tanh(W_a y_t + b_a), α_t = exp(q·u_t) / Σ_{t' ≤ T} exp(q·u_{t'}),
  s = Σ_t α_t y_t, with a learned query q (Yang et al. 2016, "Hierarchical attention networks
  for document classification"); padding gets α = 0 and the α of a sentence sum to 1. The
  model returns α for display.
- ``rating_weight`` λ > 0 (data with ratings, such as the snippets' mean rating r in [-4, 4]):
  a second linear head regresses r/4 from the same dropout(s), and training minimises
  CE + λ (r̂ - r/4)², so the model learns how positive a sentence is, not only its sign (the
  raters' mean is a richer target than the label made from it; a sentence rated 0.1 and one
  rated 3.5 are no longer the same example). Predictions still come from the softmax.
- ``ngrams`` N > 0: a second classifier over the sentence's word 1..N-grams x_g ∈ {0, 1} (a
  naive-Bayes logistic regression, Wang & Manning 2012: each feature scaled by its log-count
  ratio), fitted after training (``text_classify_ngrams``) and held in buffers; the prediction
  is the mixture p(k) = (1 - w) p_net(k) + w p_ngram(k) with w chosen by validation loss (an
  ensemble of a recurrent network and NB features, as Mesnil et al. 2014 built for reviews).
  While training w = 0: the network alone is trained and selected.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnnkit.cells.registry import cell_names
from rnnkit.config import option
from rnnkit.errors import UserError
from rnnkit.layers.torch_compat import BY_NAME

CELLS = cell_names(output_projection=False)  # the language models' cells: init_from can match
POOLS = ("last", "mean", "max", "attention")


@dataclass
class TextClassifierConfig:
    level: Literal["word", "char", "both"] = option("word", "token vectors from words, chars, both")
    cell: Literal[CELLS] = option("lstm", "the recurrent cell")  # type: ignore[valid-type]
    embedding_size: int = option(128, "E, the word embedding width (level word, both)")
    char_embedding_size: int = option(16, "level char, both: the character embedding width")
    char_hidden_size: int = option(32, "level char, both: each direction of the char encoder")
    hidden_size: int = option(128, "H, each direction of each recurrent layer")
    num_layers: int = option(1, "stacked recurrent layers")
    bidirectional: bool = option(True, "read the sentence both ways (a BiLSTM / BiGRU)")
    pool: Literal[POOLS] = option("max", "pooling over time: last, mean, max, attention")  # type: ignore[valid-type]
    attention_size: int = option(64, "pool attention: the width of u_t = tanh(W y_t + b)")
    dropout: float = option(0.5, "dropout on the token vectors, between layers, before the output")
    word_dropout: float = option(
        0.0, "training only: each word's embedding read as <unk>'s with this probability"
    )
    init_from: str | None = option(
        None, "a wordlm run: start the word embedding and the encoder from its weights"
    )
    rating_weight: float = option(
        0.0, "λ of an auxiliary loss λ (r̂ - r/4)² regressing each sentence's rating r (snippets)"
    )
    ngrams: int = option(
        0,
        "N > 0: mix in a naive-Bayes logistic regression over word 1..N-grams, fitted after "
        "training, its weight chosen on validation (0: the network alone)",
    )


def _final_hidden(state) -> Tensor:
    """h_n (L*D, B, H) of a layer's final state (the LSTM's is (h_n, c_n))."""
    return state[0] if isinstance(state, tuple) else state


class TextClassifier(nn.Module):
    """``forward(batch) -> (logits (B, K), alpha (T, B) or None)``; see the module docstring.

    Args:
        num_words, num_chars, num_classes: the vocabulary sizes.
        cfg: the model options.
    """

    def __init__(
        self,
        num_words: int,
        num_chars: int,
        num_classes: int,
        cfg: TextClassifierConfig,
        num_ngrams: int = 0,
    ):
        super().__init__()
        self.cfg = cfg
        width = 0
        self.embedding = self.char_embedding = self.char_rnn = None
        if cfg.level in ("word", "both"):
            self.embedding = nn.Embedding(num_words, cfg.embedding_size, padding_idx=0)
            width += cfg.embedding_size
        if cfg.level in ("char", "both"):
            self.char_embedding = nn.Embedding(num_chars, cfg.char_embedding_size, padding_idx=0)
            self.char_rnn = BY_NAME[cfg.cell](
                cfg.char_embedding_size, cfg.char_hidden_size, 1, bidirectional=True
            )
            width += 2 * cfg.char_hidden_size
        self.rnn = BY_NAME[cfg.cell](
            width,
            cfg.hidden_size,
            cfg.num_layers,
            bidirectional=cfg.bidirectional,
            dropout=cfg.dropout if cfg.num_layers > 1 else 0.0,
        )
        out = cfg.hidden_size * (2 if cfg.bidirectional else 1)
        if cfg.pool == "attention":
            self.attn_proj = nn.Linear(out, cfg.attention_size)
            self.attn_query = nn.Parameter(
                torch.randn(cfg.attention_size) / cfg.attention_size**0.5
            )
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(out, num_classes)
        self.rating_head = nn.Linear(out, 1) if cfg.rating_weight > 0 else None
        if cfg.ngrams > 0:  # the n-gram classifier: fitted after training, off (w = 0) until then
            self.register_buffer("ngram_weight", torch.zeros(num_ngrams, num_classes))
            self.register_buffer("ngram_bias", torch.zeros(num_classes))
            self.register_buffer("ngram_mix", torch.zeros(()))

    def char_vectors(self, chars: Tensor) -> Tensor:
        """c(w) for every token: chars (T, B, C) -> (T, B, 2 H_c); each distinct spelling in the
        batch is read once."""
        T, B, C = chars.shape
        spellings, inverse = torch.unique(chars.reshape(T * B, C), dim=0, return_inverse=True)
        lengths = (spellings != 0).sum(-1).clamp(min=1)  # padding positions: one <pad> char
        xs = self.char_embedding(spellings.T)  # (C, U, E_c)
        _, state = self.char_rnn(xs, lengths=lengths)
        h = _final_hidden(state)  # (2, U, H_c): forward at the real end, backward at the start
        vectors = torch.cat([h[0], h[1]], dim=-1)
        return vectors[inverse].reshape(T, B, -1)

    def token_vectors(self, batch) -> Tensor:
        parts = []
        if self.embedding is not None:
            words = batch.words
            p = self.cfg.word_dropout
            if self.training and p > 0:  # the spelling (level both) is still read in full
                dropped = (torch.rand(words.shape, device=words.device) < p) & (words > 0)
                words = words.masked_fill(dropped, 1)
            parts.append(self.embedding(words))
        if self.char_rnn is not None:
            parts.append(self.char_vectors(batch.chars))
        return self.drop(torch.cat(parts, dim=-1))

    def forward(self, batch, with_rating: bool = False):
        """(logits (B, K), alpha (T, B) or None), and with ``with_rating`` the rating head's
        r̂ (B,) third (the model must have one)."""
        lengths = batch.lengths
        ys, state = self.rnn(self.token_vectors(batch), lengths=lengths)  # (T, B, D H)
        mask = batch.mask  # (T, B)
        alpha = None
        pool = self.cfg.pool
        if pool == "last":
            h = _final_hidden(state)
            pooled = torch.cat([h[-2], h[-1]], -1) if self.cfg.bidirectional else h[-1]
        elif pool == "mean":
            pooled = (ys * mask[..., None]).sum(0) / lengths[:, None].to(ys.dtype)
        elif pool == "max":
            pooled = ys.masked_fill(~mask[..., None], float("-inf")).max(0).values
        else:
            scores = torch.tanh(self.attn_proj(ys)) @ self.attn_query  # (T, B)
            alpha = F.softmax(scores.masked_fill(~mask, float("-inf")), dim=0)
            pooled = (alpha[..., None] * ys).sum(0)
        pooled = self.drop(pooled)
        if with_rating:
            return self.head(pooled), alpha, self.rating_head(pooled)[:, 0]
        logits = self.head(pooled)
        if self.cfg.ngrams > 0 and float(self.ngram_mix) > 0:
            logits = self.mixed(logits, self.ngram_logits(batch))
        return logits, alpha

    def ngram_logits(self, batch) -> Tensor:
        """The n-gram classifier's logits (B, K): Σ_g x_g W_g + b over each sentence's n-grams."""
        bags = F.embedding_bag(batch.ngrams, self.ngram_weight, batch.ngram_offsets, mode="sum")
        return bags + self.ngram_bias

    def mixed(self, logits: Tensor, ngram_logits: Tensor) -> Tensor:
        """log((1 - w) p_net + w p_ngram), (B, K): log-probabilities, usable as logits."""
        w = self.ngram_mix
        return torch.logaddexp(
            torch.log1p(-w) + F.log_softmax(logits, -1),
            torch.log(w) + F.log_softmax(ngram_logits, -1),
        )


def _lower_map(tokens: list[str]) -> dict[str, int]:
    """lower-cased token -> the id of its most frequent form (the lowest id: words by count)."""
    out: dict[str, int] = {}
    for i, t in enumerate(tokens):
        out.setdefault(t.lower(), i)
    return out


def init_from_lm(model: TextClassifier, words: list[str], run: str) -> dict[str, object]:
    """Start ``model`` from a trained word language model (ULMFiT's idea: Howard & Ruder 2018).

    What is copied (nothing else is touched; the classifier's other weights keep their random
    start, and everything is fine-tuned afterwards):

    - embedding rows, mapped by word: each classifier word takes the LM's row of the same
      word, else of its lower-cased form's most frequent spelling in the LM vocabulary (the
      classifier lower-cases by default, the LM keeps case); <unk> takes the LM's <unk>; <pad>
      and words the LM lacks keep their random start. Needs model.embedding_size = the LM's E.
    - the encoder's *forward direction*: for layer l < min(L_lm, L), every parameter ``name_l{l}``
      of the LM's recurrent layer (weight_ih, weight_hh, bias_ih, bias_hh and the cell's
      others) whose shape matches; a ``weight_ih`` with more columns here (level both: the
      character part; layer l > 0 of a bidirectional stack: the backward half of the input)
      gets the LM's columns first and keeps its own for the rest. The backward direction (the
      LM never read text backwards), the character encoder, the pooling and the output layer
      start from scratch.

    Returns:
        A summary: the words mapped, of how many, and the parameters copied.

    Raises:
        UserError: the run is not a word-level LM, or its cell or sizes do not fit.
    """
    from rnnkit.tasks.runs import load_run

    lm = load_run(run, what="a language model (a wordlm run)")
    cfg = model.cfg
    if lm.level != "word":
        raise UserError(f"--model.init_from {run}: a {lm.level}-level LM, expected a wordlm run")
    lm_cfg = lm.model.rnn
    if type(lm_cfg) is not type(model.rnn):
        raise UserError(
            f"--model.init_from {run}: its cell is {type(lm_cfg).__name__}, model.cell "
            f"{cfg.cell!r} differs: set --model.cell to the LM's"
        )
    if lm_cfg.hidden_size != cfg.hidden_size:
        raise UserError(
            f"--model.init_from {run}: its hidden size is {lm_cfg.hidden_size}: set "
            f"--model.hidden_size {lm_cfg.hidden_size}"
        )
    copied: list[str] = []
    mapped = 0
    with torch.no_grad():
        if model.embedding is not None:
            source = lm.model.embedding.weight
            if source.shape[1] != cfg.embedding_size:
                raise UserError(
                    f"--model.init_from {run}: its embedding size is {source.shape[1]}: set "
                    f"--model.embedding_size {source.shape[1]}"
                )
            exact, lower = lm.vocab.stoi, _lower_map(list(lm.vocab.tokens))
            for i, w in enumerate(words):
                if i == 0:
                    continue  # <pad>
                j = exact.get(w, lower.get(w.lower())) if w != "<unk>" else exact.get("<unk>")
                if j is not None:
                    model.embedding.weight[i] = source[j]
                    mapped += 1
            copied.append("embedding.weight")
        theirs = dict(lm.model.rnn.named_parameters())
        ours = dict(model.rnn.named_parameters())
        for name, p in theirs.items():
            layer = int(name.rsplit("_l", 1)[1])
            if layer >= cfg.num_layers or name not in ours:
                continue
            q = ours[name]
            if q.shape == p.shape:
                q.copy_(p)
            elif q.dim() == 2 and q.shape[0] == p.shape[0] and q.shape[1] > p.shape[1]:
                q[:, : p.shape[1]] = p
            else:
                continue
            copied.append(f"rnn.{name}")
    return {"run": str(lm.path), "words_mapped": mapped, "words": len(words) - 1, "copied": copied}
