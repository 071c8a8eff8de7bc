"""What the tagging tasks add to the command line: loading a run back, ``rnnkit predict`` (tags
printed aligned under the words) and ``rnnkit eval`` (held-out scores beside the
most-frequent-tag baseline, and a confusion-matrix picture)."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.errors import UserError
from rnnkit.tasks.runs import load_run
from rnnkit.tasks.tagger import Tagger, TaggerVocab, check_tagger_config, tag_sentences
from rnnkit.tasks.tagger_task import TaggingRecipe
from rnnkit.train.restore import restore_model

CONFUSION_TAGS = 20  # the confusion picture shows at most this many tags (the rest: "other")


@dataclass
class LoadedTagger:
    name: str
    cfg: object
    vocab: TaggerVocab
    model: Tagger
    meta: dict
    path: Path
    recipe: TaggingRecipe


def load_tagger(ckpt, path: Path) -> LoadedTagger:
    """A tagging task's checkpoint (``TaskSpec.load`` of those tasks)."""
    from rnnkit.tasks.base import registry

    name = ckpt.meta["task"]
    spec = registry()[name]
    recipe = spec.build.__self__
    assert isinstance(recipe, TaggingRecipe), f"{name}: a tagging task builds by its recipe"

    def check(cfg):
        check_tagger_config(cfg.model)

    def build(cfg, vocab):
        return recipe.model(vocab, cfg)

    config_type = type(spec.presets[spec.default_preset]())
    cfg, vocab, model = restore_model(ckpt, path, config_type, build, TaggerVocab.from_dict, check)
    return LoadedTagger(name, cfg, vocab, model, ckpt.meta, path, recipe)


def load_tagger_run(run: Path) -> LoadedTagger:
    """A trained tagging run (its best checkpoint, else the last) or checkpoint file."""
    return load_run(run, load_tagger, "a tagging task")


def aligned(tokens: list[str], tags: list[str]) -> str:
    """Two lines: the words, and each tag under its word (columns as wide as the wider)."""
    widths = [max(len(w), len(t)) for w, t in zip(tokens, tags, strict=True)]
    top = "  ".join(w.ljust(n) for w, n in zip(tokens, widths, strict=True))
    bottom = "  ".join(t.ljust(n) for t, n in zip(tags, widths, strict=True))
    return f"{top.rstrip()}\n{bottom.rstrip()}"


def predict_one(loaded: LoadedTagger, text: str) -> str:
    """The tags of one sentence (tokens separated by white space), aligned under its words."""
    tokens = text.split()
    if not tokens:
        raise UserError("predict: the sentence is empty")
    return aligned(tokens, tag_sentences(loaded.model, loaded.vocab, [tokens])[0])


def use_threads(loaded: LoadedTagger) -> None:
    """The run's ``train.threads`` for predict and eval too (0: torch's default)."""
    if loaded.cfg.train.threads:
        torch.set_num_threads(loaded.cfg.train.threads)


def cmd_predict(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rnnkit predict", description="Tags of sentences by a tagging run."
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument(
        "inputs", nargs="+", help="sentences, tokens separated by spaces ('The old man .')"
    )
    a = p.parse_args(argv)
    loaded = load_tagger_run(Path(a.run))
    use_threads(loaded)
    sentences = [s.split() for s in a.inputs]
    if not all(sentences):
        raise UserError("predict: an input sentence is empty")
    for tokens, tags in zip(
        sentences, tag_sentences(loaded.model, loaded.vocab, sentences), strict=True
    ):
        unknown = [w for w in tokens if loaded.vocab.word_id(w) == 1]
        print(aligned(tokens, tags))
        if unknown:
            print(f"(not in the word vocabulary, read by their spelling: {' '.join(unknown)})")
        print()
    return 0


def confusion(gold: list[list[str]], pred: list[list[str]], top: int = CONFUSION_TAGS):
    """The confusion counts of the ``top`` most frequent gold tags (rows: gold, columns:
    predicted); every other tag is pooled as "other". Returns (matrix, labels)."""
    from collections import Counter

    counts = Counter(t for sent in gold for t in sent)
    labels = [t for t, _ in counts.most_common()]
    if len(labels) > top:
        labels = [*labels[: top - 1], "other"]
    where = {t: i for i, t in enumerate(labels)}
    other = where.get("other", None)
    matrix = [[0] * len(labels) for _ in labels]
    for g_sent, p_sent in zip(gold, pred, strict=True):
        for g, p in zip(g_sent, p_sent, strict=True):
            i, j = where.get(g, other), where.get(p, other)
            if i is not None and j is not None:
                matrix[i][j] += 1
    return matrix, labels


def plot_tag_confusion(matrix, labels, path: Path, title: str) -> Path:
    from rnnkit.plots_eval import plot_confusion

    return plot_confusion(matrix, labels, path, title=title)


def cmd_eval(argv: list[str]) -> int:
    from collections import Counter

    from rnnkit.files import atomic_write
    from rnnkit.tasks.eval_files import add_out_options, eval_output

    p = argparse.ArgumentParser(
        prog="rnnkit eval", description="Held-out scores of a tagging run, beside the baseline."
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--split", default="test", choices=("test", "val"), help="(default: test)")
    add_out_options(p, "the confusion matrix")
    p.add_argument(
        "--tagset",
        default=None,
        help="score in another tag set: the predictions mapped into it, the gold tags read "
        "in it (pos: a full- or base-tag run scored as universal or base)",
    )
    p.add_argument("--confused", type=int, default=10, help="print the N most confused pairs")
    a = p.parse_args(argv)
    run = Path(a.run)
    split = a.split + (f"_{a.tagset}" if a.tagset else "")
    out = eval_output(run, a.out, split, a.force)
    if a.confused < 0:
        raise UserError(f"--confused must be >= 0, got {a.confused}")
    loaded = load_tagger_run(run)
    use_threads(loaded)
    if a.tagset:
        if loaded.recipe.retag is None:
            raise UserError(f"--tagset: the {loaded.name} task has one tag set")
        splits, mapping = loaded.recipe.retag(loaded.cfg, a.tagset)
    else:
        splits, mapping = loaded.recipe.sentences(loaded.cfg), None
    sentences = splits[a.split]
    if not sentences:
        raise UserError(f"{loaded.name}: the {a.split} split holds no sentences")
    tokens = [list(s[0]) for s in sentences]
    gold = [list(s[1]) for s in sentences]
    pred = tag_sentences(loaded.model, loaded.vocab, tokens)
    if mapping is not None:
        pred = [[mapping(t) for t in sent] for sent in pred]
    scorer = loaded.recipe.scorer(loaded.vocab, splits["train"])
    metrics = scorer.metrics(scorer.sums(tokens, gold, pred))
    n_tokens = sum(len(t) for t in tokens)
    pairs = Counter(
        (g, q)
        for gs, ps in zip(gold, pred, strict=True)
        for g, q in zip(gs, ps, strict=True)
        if g != q
    )
    matrix, labels = confusion(gold, pred)
    result = {
        "task": loaded.name,
        "checkpoint": str(loaded.path),
        "split": a.split,
        "tagset": a.tagset,
        "sentences": len(sentences),
        "tokens": n_tokens,
        **metrics,
        "most_confused": [[g, q, n] for (g, q), n in pairs.most_common(a.confused)],
        "confusion": {"labels": labels, "matrix": matrix},
    }
    print(f"{loaded.name} {a.split}: {len(sentences):,} sentences, {n_tokens:,} tokens")
    print(report_lines(metrics))
    for (g, q), n in pairs.most_common(a.confused):
        print(f"  {n:6d} x  {g} tagged as {q}")
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    tags = f", {a.tagset} tags" if a.tagset else ""
    title = f"{loaded.name} ({a.split}{tags}): true tag by predicted tag"
    if "other" in labels:  # the picture's own accuracy counts other -> other as right
        title += (
            f"; the {len(labels) - 1} most frequent tags, 'other' pools the rest (mistakes "
            f"among them count as right here: token accuracy {metrics.get('accuracy', 0):.2%})"
        )
    png = plot_tag_confusion(matrix, labels, out.with_suffix(".png"), title)
    print(f"results: {out}, {png}")
    return 0


def report_lines(m: dict) -> str:
    """The scores of ``TokenAccuracy`` as lines (other scorers: every metric, one line)."""
    if "baseline_accuracy" not in m:
        return "  " + ", ".join(f"{k} {v:.4f}" for k, v in m.items())
    return (
        f"  accuracy          {m['accuracy']:.4f}   (most-frequent-tag baseline "
        f"{m['baseline_accuracy']:.4f})\n"
        f"  unseen words      {m['unseen_accuracy']:.4f}   (baseline "
        f"{m['baseline_unseen_accuracy']:.4f}; {m['unseen_share']:.1%} of the tokens)"
    )


def hooks() -> dict:
    """The ``TaskSpec`` fields that every tagging task shares."""
    return {
        "load": load_tagger,
        "load_vocab": TaggerVocab.from_dict,
        "predict": predict_one,
        "run_commands": {
            "predict": (cmd_predict, "tags of sentences, aligned under the words"),
            "eval": (cmd_eval, "held-out accuracy beside the baseline; a confusion matrix PNG"),
        },
    }
