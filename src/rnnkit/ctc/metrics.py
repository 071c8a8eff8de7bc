"""Error rates of recognised text: edit distances, CER and WER.

The edit (Levenshtein) distance ``d(r, h)`` is the fewest substitutions, deletions and
insertions turning the reference r into the hypothesis h:

    D[i][j] = min(D[i-1][j] + 1, D[i][j-1] + 1, D[i-1][j-1] + [r_i ≠ h_j]),  d = D[|r|][|h|]

computed a row at a time with numpy: the first two terms per row are element-wise, and the
insertion chain along the row is ``D[i][j] = j + cummin_k≤j (D'[i][k] - k)``. Corpus rates are
``Σ d / Σ |r|`` (as jiwer's, against which it is tested): CER over characters (spaces count,
nothing is stripped), WER over words (``str.split()``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


def edit_distance(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> int:
    """The Levenshtein distance between two sequences (strings, word lists, label lists)."""
    if len(ref) == 0 or len(hyp) == 0:
        return max(len(ref), len(hyp))
    codes: dict = {}
    r = np.array([codes.setdefault(x, len(codes)) for x in ref])
    h = np.array([codes.setdefault(x, len(codes)) for x in hyp])
    j = np.arange(len(h) + 1)
    row = j.copy()
    for i, ri in enumerate(r, 1):
        new = np.empty_like(row)
        new[0] = i
        new[1:] = np.minimum(row[1:] + 1, row[:-1] + (h != ri))
        row = j + np.minimum.accumulate(new - j)
    return int(row[-1])


def _pairs(refs, hyps) -> tuple[list, list]:
    if isinstance(refs, str) and isinstance(hyps, str):
        return [refs], [hyps]
    refs, hyps = list(refs), list(hyps)
    if len(refs) != len(hyps):
        raise ValueError(f"refs and hyps must be as many, got {len(refs)} and {len(hyps)}")
    return refs, hyps


def edit_distances(refs, hyps, unit: str = "char") -> list[int]:
    """Per pair, the edit distance over characters (``unit="char"``) or words ("word")."""
    if unit not in ("char", "word"):
        raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
    refs, hyps = _pairs(refs, hyps)
    if unit == "word":
        return [edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps, strict=True)]
    return [edit_distance(r, h) for r, h in zip(refs, hyps, strict=True)]


def _rate(refs, hyps, unit: str) -> float:
    refs, hyps = _pairs(refs, hyps)
    total = sum(len(r.split() if unit == "word" else r) for r in refs)
    if total == 0:
        raise ValueError(f"the references hold no {unit}s: the error rate is undefined")
    return sum(edit_distances(refs, hyps, unit)) / total


def cer(refs, hyps) -> float:
    """Character error rate: Σ edit distance / Σ reference characters (strings or lists)."""
    return _rate(refs, hyps, "char")


def wer(refs, hyps) -> float:
    """Word error rate: Σ edit distance over words / Σ reference words."""
    return _rate(refs, hyps, "word")
