"""Entity-level scores of a named-entity tagger, as seqeval computes them, and their picture.

An entity is a chunk (type, first token, last token) as ``seqeval.metrics.sequence_labeling.
get_entities`` reads BIO tags (seqeval's default, conlleval-compatible mode: an ``I-X`` that
does not continue an ``X`` chunk starts one). A predicted entity is right when the gold tags
hold exactly the same chunk. Per type X and over all types (micro-average):

    precision = |pred ∩ gold| / |pred|      recall = |pred ∩ gold| / |gold|
    F1 = 2 P R / (P + R)                    (0 when a denominator is 0)

which is ``seqeval.metrics.precision_score / recall_score / f1_score`` on the same sentences
(tests/tasks/test_ner.py checks it). The counts are kept as sums, so that evaluation can add
them batch by batch (and across processes). Token accuracy: the share of tokens whose tag is
right, ``O`` included.

Binary runs (``--data.binary X``: tags ``0``/``1``) are scored as entities after turning each
maximal run of ``1`` into one ``X`` entity (``conll.binary_to_bio``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from seqeval.metrics.sequence_labeling import get_entities

from rnnkit.tasks.conll import binary_to_bio


def entity_types_of(tags: Sequence[str]) -> list[str]:
    """The entity types of a tag set: BIO tags' types, or the type of a binary run's tags."""
    return sorted({t[2:] for t in tags if t not in ("O", "0", "1")})


def prf(tp: float, pred: float, gold: float) -> tuple[float, float, float]:
    """precision, recall, F1 from counts (0 where undefined, as seqeval's zero_division=0)."""
    p = tp / pred if pred else 0.0
    r = tp / gold if gold else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


class EntityScores:
    """The scorer of ``TaggingRecipe``: entity P/R/F1 per type and overall, token accuracy.

    Args:
        vocab: the run's tagger vocabulary (its ``tags`` fix the entity types).
        train: the training sentences (unused: no baseline beyond the counts).
        binary: the entity type of a binary run (tags ``0``/``1``), else None.
    """

    selection = ("f1", "max")  # the best checkpoint: the highest validation entity F1
    names = ("f1", "precision", "recall", "token_accuracy")

    def __init__(self, vocab, train=(), binary: str | None = None) -> None:
        self.binary = binary
        self.types = [binary] if binary else entity_types_of(vocab.tags)

    def bio(self, tags: Sequence[str]) -> list[str]:
        return binary_to_bio(tags, self.binary) if self.binary else list(tags)

    def sums(
        self, tokens: Sequence[Sequence[str]], gold: Sequence[Sequence[str]], pred: Sequence
    ) -> dict[str, float]:
        s = {"tokens": 0.0, "right": 0.0}
        for kind in self.types:
            s[f"tp:{kind}"] = s[f"pred:{kind}"] = s[f"gold:{kind}"] = 0.0
        for g, p in zip(gold, pred, strict=True):
            s["tokens"] += len(g)
            s["right"] += sum(a == b for a, b in zip(g, p, strict=True))
            g_ents = set(get_entities(self.bio(g)))
            p_ents = set(get_entities(self.bio(p)))
            for kind, *_ in g_ents:
                s[f"gold:{kind}"] = s.get(f"gold:{kind}", 0.0) + 1
            for kind, *_ in p_ents:
                s[f"pred:{kind}"] = s.get(f"pred:{kind}", 0.0) + 1
            for kind, *_ in g_ents & p_ents:
                s[f"tp:{kind}"] = s.get(f"tp:{kind}", 0.0) + 1
        return s

    def metrics(self, sums: dict[str, float]) -> dict[str, float]:
        table = per_type(sums)
        overall = table["overall"]
        return {
            "f1": overall["f1"],
            "precision": overall["precision"],
            "recall": overall["recall"],
            "token_accuracy": sums["right"] / max(sums["tokens"], 1.0),
        }


def per_type(sums: dict[str, float]) -> dict[str, dict[str, float]]:
    """{type: {precision, recall, f1, support, predicted}} and "overall" (micro-averaged) from
    the sums; a type with no gold and no predicted entity has no row."""
    kinds = sorted({k.split(":", 1)[1] for k in sums if ":" in k})
    table = {}
    for kind in [*kinds, "overall"]:
        if kind == "overall":
            tp, pred, gold = (sum(sums[f"{c}:{k}"] for k in kinds) for c in ("tp", "pred", "gold"))
        else:
            tp, pred, gold = (sums.get(f"{c}:{kind}", 0.0) for c in ("tp", "pred", "gold"))
        if kind != "overall" and not pred and not gold:
            continue  # a type neither in the gold tags nor predicted: no row
        p, r, f = prf(tp, pred, gold)
        table[kind] = {"precision": p, "recall": r, "f1": f, "support": int(gold)}
        table[kind]["predicted"] = int(pred)
    return table


def format_table(table: dict[str, dict[str, float]], accuracy: float | None = None) -> str:
    """The per-type table as text, one row a type, "overall" last."""
    lines = [f"{'type':<10} {'precision':>9} {'recall':>7} {'F1':>7} {'support':>8} {'pred':>6}"]
    for kind, row in table.items():
        lines.append(
            f"{kind:<10} {row['precision']:>9.3f} {row['recall']:>7.3f} {row['f1']:>7.3f} "
            f"{row['support']:>8d} {row['predicted']:>6d}"
        )
    if accuracy is not None:
        lines.append(f"token accuracy {accuracy:.4f}")
    return "\n".join(lines)


def write_report(table: dict, extra: dict, json_path: Path, png_path: Path, title: str) -> None:
    """The table as JSON (with ``extra``: the run, split, token accuracy) and as a bar chart."""
    from rnnkit.files import atomic_write
    from rnnkit.plots import figure, save_figure

    atomic_write(
        json_path, json.dumps({**extra, "per_type": table}, indent=2, ensure_ascii=False) + "\n"
    )
    kinds = list(table)
    fig, [[ax]] = figure(figsize=(max(5.0, 0.8 * len(kinds) + 2), 3.6))
    xs = range(len(kinds))
    width = 0.27
    for i, (key, colour) in enumerate((("precision", "C0"), ("recall", "C1"), ("f1", "C2"))):
        ax.bar(
            [x + (i - 1) * width for x in xs],
            [table[k][key] for k in kinds],
            width,
            label=key if key != "f1" else "F1",
            color=colour,
        )
    ax.set_xticks(list(xs), [f"{k}\n({table[k]['support']})" for k in kinds])
    ax.set_ylim(0, 1.15)
    ax.set_ylabel("score")
    ax.set_xlabel("entity type (gold entities)")
    ax.set_title(title)
    ax.legend(loc="upper center", ncol=3, fontsize=8, frameon=False)
    save_figure(fig, png_path)
