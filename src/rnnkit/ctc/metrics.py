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


def edit_alignment(ref: Sequence[Hashable], hyp: Sequence[Hashable]) -> list[tuple[str, int, int]]:
    """A minimal edit alignment of ``ref`` to ``hyp``: ``(op, i, j)`` in order, op "=" (ref[i]
    is hyp[j]), "s" (ref[i] heard as hyp[j]), "d" (ref[i] deleted; j = -1) or "i" (hyp[j]
    inserted; i = -1). The ops other than "=" are ``edit_distance(ref, hyp)`` many; among
    equally short alignments, the backtrace from the end prefers a match or substitution, then
    a deletion, then an insertion."""
    n, m = len(ref), len(hyp)
    D = [list(range(m + 1))] + [[i] + [0] * m for i in range(1, n + 1)]  # D of the module docstring
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            D[i][j] = min(
                D[i - 1][j] + 1, D[i][j - 1] + 1, D[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1])
            )
    ops, i, j = [], n, m
    while i or j:
        if i and j and D[i][j] == D[i - 1][j - 1] + (ref[i - 1] != hyp[j - 1]):
            i, j = i - 1, j - 1
            ops.append(("=" if ref[i] == hyp[j] else "s", i, j))
        elif i and D[i][j] == D[i - 1][j] + 1:
            i -= 1
            ops.append(("d", i, -1))
        else:
            j -= 1
            ops.append(("i", -1, j))
    return ops[::-1]


def error_breakdown(refs: Sequence[Sequence], hyps: Sequence[Sequence], top: int = 10) -> dict:
    """Where the errors of token sequences are, from ``edit_alignment``: per reference position
    ("first", "middle", "last"; "alone" for a one-token reference) the tokens, their errors
    (substitutions and deletions) and the rate; the insertions; and the ``top`` most common
    confusions ``[ref token, hyp token, count]``, "" standing for nothing (a deletion or an
    insertion), most common first, ties in first-seen order."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 0:
        raise ValueError(f"top must be an integer >= 0, got {top!r}")
    refs, hyps = _pairs(refs, hyps)
    where = {k: [0, 0] for k in ("first", "middle", "last", "alone")}
    confusions: dict = {}
    insertions = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        n = len(ref)
        for op, i, j in edit_alignment(ref, hyp):
            if op == "i":
                insertions += 1
            else:
                k = "alone" if n == 1 else "first" if i == 0 else "last" if i == n - 1 else "middle"
                where[k][0] += 1
                where[k][1] += op != "="
            if op != "=":
                pair = (ref[i] if i >= 0 else "", hyp[j] if j >= 0 else "")
                confusions[pair] = confusions.get(pair, 0) + 1
    ranked = sorted(confusions.items(), key=lambda kv: -kv[1])[:top]  # stable: first seen first
    return {
        "by_position": {
            k: {"tokens": t, "errors": e, "rate": e / t if t else 0.0}
            for k, (t, e) in where.items()
        },
        "insertions": insertions,
        "confusions": [[str(r), str(h), c] for (r, h), c in ranked],
    }
