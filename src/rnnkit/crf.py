r"""A linear-chain conditional random field over per-token emission scores.

Lafferty, McCallum & Pereira 2001; as the output layer of a BiLSTM tagger: Huang, Xu & Yu 2015,
Lample et al. 2016. For one sequence of length L with emission scores e_t(k) (from the network)
and learned transition scores A[i, j] (tag i followed by tag j), start scores s[k] and end
scores f[k], a tag path y = (y_0 .. y_{L-1}) scores

    score(y) = s[y_0] + Σ_{t=0}^{L-1} e_t(y_t) + Σ_{t=1}^{L-1} A[y_{t-1}, y_t] + f[y_{L-1}]

and p(y | x) = exp(score(y)) / Z with Z = Σ_{y'} exp(score(y')) over all K^L paths. Z comes from
the forward algorithm in log space,

    α_0(k) = s[k] + e_0(k)
    α_t(k) = e_t(k) + logsumexp_j (α_{t-1}(j) + A[j, k])          t = 1 .. L-1
    log Z  = logsumexp_k (α_{L-1}(k) + f[k]),

and the best path from Viterbi: the same recursion with max in place of logsumexp and a back
pointer per step. Both are vectorised over the batch; a sequence shorter than T keeps its α (and
an identity back pointer) after its last step, so padding never changes a result.

Constraints (for BIO tags: ``I-X`` only after ``B-X`` or ``I-X``, never first) are a
``Constraints`` of three boolean masks; a forbidden transition's score is replaced by
``FORBIDDEN`` (-10^4, not -inf, so that gradients stay finite), so no forbidden path is ever
decoded and forbidden paths carry no probability mass (exp(-10^4) is 0 in float32 and float64).

Shapes are time-major like the rest of rnnkit: emissions (T, B, K), tags (T, B), lengths (B,).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

FORBIDDEN = -1e4  # the score of a forbidden transition: exp(FORBIDDEN) underflows to 0


@dataclass(frozen=True)
class Constraints:
    """Which transitions a CRF may use. ``allowed[i, j]``: tag i may be followed by tag j;
    ``start[k]``: a sequence may begin with tag k; ``end[k]``: it may end with tag k."""

    allowed: Tensor  # (K, K) bool
    start: Tensor  # (K,) bool
    end: Tensor  # (K,) bool


def bio_constraints(tag_names: Sequence[str]) -> Constraints:
    """The BIO rules: ``I-X`` may only follow ``B-X`` or ``I-X`` and cannot begin a sentence;
    ``O`` and ``B-X`` may follow anything; any tag may end a sentence.

    Args:
        tag_names: one name per tag index, each ``O``, ``B-TYPE`` or ``I-TYPE``.
    Raises:
        ValueError: a name not in that form (named).
    """
    parsed = []
    for name in tag_names:
        if name == "O":
            parsed.append(("O", ""))
        elif len(name) > 2 and name[:2] in ("B-", "I-"):
            parsed.append((name[0], name[2:]))
        else:
            raise ValueError(f"tag_names: {name!r} is not a BIO tag (expected O, B-TYPE or I-TYPE)")
    K = len(parsed)
    if K == 0:
        raise ValueError("tag_names: empty (expected at least one BIO tag)")
    allowed = torch.ones(K, K, dtype=torch.bool)
    start = torch.ones(K, dtype=torch.bool)
    for j, (prefix, kind) in enumerate(parsed):
        if prefix == "I":
            start[j] = False
            for i, (prev_prefix, prev_kind) in enumerate(parsed):
                allowed[i, j] = prev_prefix in ("B", "I") and prev_kind == kind
    return Constraints(allowed=allowed, start=start, end=torch.ones(K, dtype=torch.bool))


class CRF(nn.Module):
    r"""Linear-chain CRF: learned transitions (K, K), start (K,) and end (K,) scores.

    ``forward(emissions, tags, lengths)`` is log p(tags | emissions) per sequence (B,): the gold
    path's score minus log Z (maximise it; the loss is its negative mean). ``log_partition``
    is log Z (B,); ``decode`` the Viterbi paths, one list of L_b tag indices per sequence.
    Parameters start at zero, so an untrained CRF decodes the per-token argmax of the
    emissions (restricted to allowed paths when constrained).

    Args:
        num_tags: K, the number of tags.
        constraints: optional ``Constraints`` (e.g. ``bio_constraints(tag_names)``); forbidden
            transitions score ``FORBIDDEN`` and their parameters get no gradient.
    """

    def __init__(self, num_tags: int, constraints: Constraints | None = None):
        super().__init__()
        if isinstance(num_tags, bool) or not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags: expected a positive int, got {num_tags!r}")
        self.num_tags = num_tags
        self.transitions = nn.Parameter(torch.zeros(num_tags, num_tags))  # A[i, j]: i -> j
        self.start_transitions = nn.Parameter(torch.zeros(num_tags))  # s
        self.end_transitions = nn.Parameter(torch.zeros(num_tags))  # f
        if constraints is not None:
            if not isinstance(constraints, Constraints):
                raise ValueError(
                    f"constraints: expected a Constraints (e.g. bio_constraints(tag_names)), "
                    f"got {type(constraints).__name__}"
                )
            shapes = (
                tuple(constraints.allowed.shape),
                tuple(constraints.start.shape),
                tuple(constraints.end.shape),
            )
            if shapes != ((num_tags, num_tags), (num_tags,), (num_tags,)):
                raise ValueError(
                    f"constraints: masks of shapes {shapes} do not fit num_tags={num_tags}"
                )
            if not bool(constraints.start.any()) or not bool(constraints.end.any()):
                raise ValueError("constraints: no tag may start or no tag may end a sequence")
        self.constrained = constraints is not None
        # rebuilt from the tag names when a model is made, so not saved in checkpoints
        ok = constraints or Constraints(
            torch.ones(num_tags, num_tags, dtype=torch.bool),
            torch.ones(num_tags, dtype=torch.bool),
            torch.ones(num_tags, dtype=torch.bool),
        )
        self.register_buffer("allowed", ok.allowed.bool().clone(), persistent=False)
        self.register_buffer("allowed_start", ok.start.bool().clone(), persistent=False)
        self.register_buffer("allowed_end", ok.end.bool().clone(), persistent=False)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, constrained={self.constrained}"

    def scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """The transition, start and end scores in use: forbidden entries set to FORBIDDEN."""
        A = self.transitions.masked_fill(~self.allowed, FORBIDDEN)
        s = self.start_transitions.masked_fill(~self.allowed_start, FORBIDDEN)
        f = self.end_transitions.masked_fill(~self.allowed_end, FORBIDDEN)
        return A, s, f

    def forward(self, emissions: Tensor, tags: Tensor, lengths: Tensor | Sequence[int]) -> Tensor:
        """log p(tags | emissions) = score(tags) - log Z, one value per sequence (B,).

        Args:
            emissions: (T, B, K) float scores e_t(k).
            tags: (T, B) integer gold tags; entries at t >= lengths[b] are ignored.
            lengths: (B,) lengths L_b with 1 <= L_b <= T.
        """
        lengths = self._check(emissions, lengths)
        if not isinstance(tags, Tensor) or tags.shape != emissions.shape[:2]:
            got = tuple(tags.shape) if isinstance(tags, Tensor) else type(tags).__name__
            raise ValueError(f"tags: expected shape {tuple(emissions.shape[:2])}, got {got}")
        if tags.dtype.is_floating_point or tags.dtype == torch.bool:
            raise ValueError(f"tags: expected an integer tensor, got {tags.dtype}")
        T, B, K = emissions.shape
        mask = torch.arange(T, device=emissions.device)[:, None] < lengths[None, :]  # (T, B)
        real = tags.masked_select(mask)
        if real.numel() and (int(real.min()) < 0 or int(real.max()) >= K):
            raise ValueError(f"tags: values must lie in [0, {K}) within the lengths")
        y = tags.masked_fill(~mask, 0).long()
        A, s, f = self.scores()
        mask_f = mask.to(emissions.dtype)
        score = s[y[0]] + (emissions.gather(2, y[..., None]).squeeze(2) * mask_f).sum(0)
        score = score + (A[y[:-1], y[1:]] * mask_f[1:]).sum(0)
        last = y.gather(0, (lengths - 1)[None, :]).squeeze(0)  # (B,) y_{L-1}
        score = score + f[last]
        return score - self._log_partition(emissions, mask, A, s, f)

    def log_partition(self, emissions: Tensor, lengths: Tensor | Sequence[int]) -> Tensor:
        """log Z per sequence (B,), by the forward algorithm in log space."""
        lengths = self._check(emissions, lengths)
        T = emissions.shape[0]
        mask = torch.arange(T, device=emissions.device)[:, None] < lengths[None, :]
        return self._log_partition(emissions, mask, *self.scores())

    def _log_partition(self, emissions: Tensor, mask: Tensor, A: Tensor, s: Tensor, f: Tensor):
        alpha = s + emissions[0]  # (B, K)
        for t in range(1, emissions.shape[0]):
            # α_t(k) = e_t(k) + logsumexp_j (α_{t-1}(j) + A[j, k])
            step = torch.logsumexp(alpha[:, :, None] + A, dim=1) + emissions[t]
            alpha = torch.where(mask[t][:, None], step, alpha)
        return torch.logsumexp(alpha + f, dim=1)

    @torch.no_grad()
    def decode(self, emissions: Tensor, lengths: Tensor | Sequence[int]) -> list[list[int]]:
        """The Viterbi path of each sequence: a list of B lists, the b-th of length L_b."""
        lengths = self._check(emissions, lengths)
        T, B, K = emissions.shape
        A, s, f = self.scores()
        A, s, f = A.to(emissions.dtype), s.to(emissions.dtype), f.to(emissions.dtype)
        delta = s + emissions[0]  # (B, K) best score of a path ending in k
        identity = torch.arange(K, device=emissions.device).expand(B, K)
        pointers = []
        for t in range(1, T):
            best, arg = (delta[:, :, None] + A).max(dim=1)  # over the previous tag j
            live = (t < lengths)[:, None]
            delta = torch.where(live, best + emissions[t], delta)
            pointers.append(torch.where(live, arg, identity))  # padding: stay on the same tag
        tag = (delta + f).argmax(dim=1)  # (B,) the last tag of each best path
        path = [tag]
        for arg in reversed(pointers):
            tag = arg.gather(1, tag[:, None]).squeeze(1)
            path.append(tag)
        path = torch.stack(path[::-1]).tolist()  # (T, B): padded steps repeat the last tag
        return [[path[t][b] for t in range(int(lengths[b]))] for b in range(B)]

    def _check(self, emissions: Tensor, lengths: Tensor | Sequence[int]) -> Tensor:
        if not isinstance(emissions, Tensor) or emissions.dim() != 3:
            got = tuple(emissions.shape) if isinstance(emissions, Tensor) else type(emissions)
            raise ValueError(f"emissions: expected a (T, B, K) tensor, got {got}")
        T, B, K = emissions.shape
        if K != self.num_tags:
            raise ValueError(f"emissions: last dimension {K} != num_tags {self.num_tags}")
        if not emissions.dtype.is_floating_point:
            raise ValueError(f"emissions: expected a floating-point tensor, got {emissions.dtype}")
        if T == 0:
            raise ValueError("emissions: T is 0 (expected at least one step)")
        lengths = torch.as_tensor(lengths, device=emissions.device)
        if lengths.shape != (B,) or lengths.dtype.is_floating_point:
            raise ValueError(
                f"lengths: expected {B} integers (one per sequence), got {tuple(lengths.shape)} "
                f"{lengths.dtype}"
            )
        if B and (int(lengths.min()) < 1 or int(lengths.max()) > T):
            raise ValueError(f"lengths: each must lie in [1, {T}] (T), got {lengths.tolist()}")
        return lengths.long()
