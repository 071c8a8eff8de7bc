"""``rnnkit predict`` and ``rnnkit eval`` for named-entity runs.

``rnnkit predict RUN "2005 年 7 月 14 日 、 南アフリカ で"`` prints each sentence with its
entities as bracketed spans, ``[2005 年 7 月 14 日]DAT 、 [南アフリカ]LOC で``, and the tags aligned
under the tokens (columns measured in display cells: a CJK character is two). Tokens are
separated by white space: the Japanese corpus is MeCab-segmented, so give it segmented text.

``rnnkit eval RUN [--split test]`` scores the held-out split (``ner_scores``: entity precision,
recall and F1 per type and overall, token accuracy), prints the table and writes it as JSON
and a bar chart (PNG) beside it: RUN/ner_eval_test.json and .png by default.
"""

from __future__ import annotations

import argparse
import unicodedata
from pathlib import Path

from seqeval.metrics.sequence_labeling import get_entities

from rnnkit.errors import UserError
from rnnkit.tasks.tagger import TaggerVocab, tag_sentences
from rnnkit.tasks.tagger_commands import LoadedTagger, load_tagger, load_tagger_run, use_threads


def width(text: str) -> int:
    """Display cells of ``text`` in a terminal: wide and full-width characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def aligned(tokens: list[str], tags: list[str]) -> str:
    """Two lines: the tokens, and each tag under its token (in display cells)."""
    cells = [max(width(w), width(t)) for w, t in zip(tokens, tags, strict=True)]
    top = "  ".join(w + " " * (n - width(w)) for w, n in zip(tokens, cells, strict=True))
    bottom = "  ".join(t + " " * (n - width(t)) for t, n in zip(tags, cells, strict=True))
    return f"{top.rstrip()}\n{bottom.rstrip()}"


def bio_of(loaded: LoadedTagger, tags: list[str]) -> list[str]:
    """A run's predicted tags as BIO (a binary run's runs of 1 as entities of its type)."""
    from rnnkit.tasks.conll import binary_to_bio

    kind = loaded.cfg.data.binary
    return binary_to_bio(tags, kind) if kind else list(tags)


def spans(tokens: list[str], bio: list[str]) -> str:
    """The sentence with each entity bracketed and typed: ``[South Africa]LOC``."""
    starts = {start: (kind, end) for kind, start, end in get_entities(bio)}
    out, i = [], 0
    while i < len(tokens):
        if i in starts:
            kind, end = starts[i]
            out.append(f"[{' '.join(tokens[i : end + 1])}]{kind}")
            i = end + 1
        else:
            out.append(tokens[i])
            i += 1
    return " ".join(out)


def predict_lines(loaded: LoadedTagger, sentences: list[list[str]]) -> list[str]:
    """For each sentence: its spans line, then the tokens and tags aligned."""
    if not all(sentences):
        raise UserError("predict: an input sentence is empty")
    out = []
    for tokens, tags in zip(
        sentences, tag_sentences(loaded.model, loaded.vocab, sentences), strict=True
    ):
        out.append(spans(tokens, bio_of(loaded, tags)) + "\n" + aligned(tokens, tags))
    return out


def predict_one(loaded: LoadedTagger, text: str) -> str:
    """One sentence (tokens separated by white space): its entities and its tags."""
    return predict_lines(loaded, [text.split()])[0]


def cmd_predict(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rnnkit predict", description="Named entities of sentences by a ner run."
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("inputs", nargs="+", help="sentences, tokens separated by spaces")
    a = p.parse_args(argv)
    loaded = load_tagger_run(Path(a.run))
    use_threads(loaded)
    for block in predict_lines(loaded, [s.split() for s in a.inputs]):
        print(block + "\n")
    return 0


def cmd_eval(argv: list[str]) -> int:
    from rnnkit.tasks.eval_files import add_out_options, eval_output
    from rnnkit.tasks.ner_scores import format_table, per_type, write_report

    p = argparse.ArgumentParser(
        prog="rnnkit eval", description="Entity precision, recall and F1 of a ner run, by type."
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--split", default="test", choices=("test", "val"), help="(default: test)")
    add_out_options(p, "a bar chart of the per-type scores", "ner_eval_SPLIT")
    a = p.parse_args(argv)
    run = Path(a.run)
    out = eval_output(run, a.out, a.split, a.force, stem="ner_eval")
    loaded = load_tagger_run(run)
    use_threads(loaded)
    recipe = loaded.recipe.for_config(loaded.cfg)
    splits = recipe.sentences(loaded.cfg)
    sentences = splits[a.split]
    tokens = [list(s[0]) for s in sentences]
    gold = [list(s[1]) for s in sentences]
    pred = tag_sentences(loaded.model, loaded.vocab, tokens)
    scorer = recipe.scorer(loaded.vocab, splits["train"])
    sums = scorer.sums(tokens, gold, pred)
    metrics = scorer.metrics(sums)
    table = per_type(sums)
    crf = "CRF" if loaded.cfg.model.crf else "softmax"
    print(f"ner {a.split}: {len(sentences):,} sentences, {int(sums['tokens']):,} tokens ({crf})")
    print(format_table(table, metrics["token_accuracy"]))
    extra = {
        "task": "ner",
        "checkpoint": str(loaded.path),
        "split": a.split,
        "crf": bool(loaded.cfg.model.crf),
        "sentences": len(sentences),
        **metrics,
    }
    title = f"ner {a.split} ({crf}): entity F1 {metrics['f1']:.3f}"
    write_report(table, extra, out, out.with_suffix(".png"), title)
    print(f"results: {out}, {out.with_suffix('.png')}")
    return 0


def hooks() -> dict:
    """The ``TaskSpec`` fields of the ner task: loading as every tagger, its own commands."""
    return {
        "load": load_tagger,
        "load_vocab": TaggerVocab.from_dict,
        "predict": predict_one,
        "run_commands": {
            "predict": (cmd_predict, "entities of sentences as bracketed spans, tags aligned"),
            "eval": (cmd_eval, "entity precision/recall/F1 per type; a JSON table and a PNG"),
        },
    }
