"""What a text-classification task adds to the command line:

- ``rnnkit predict RUN TEXT ... [--attention words.png]``: the label of each text and its
  probability; with attention pooling, ``--attention`` draws the words shaded by their
  weight α_t (one PNG per text, numbered when there are several).
- ``rnnkit eval RUN [--split test|val] [--data FILE]``: accuracy on a held-out split against
  the majority-class baseline, the confusion matrix (a PNG) and a results JSON.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import torch

from rnnkit.errors import UserError
from rnnkit.tasks.text_classify import LoadedClassifier, classify, evaluate_examples
from rnnkit.tasks.text_classify_data import read_examples, split_examples


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    from rnnkit.argparse_config import OneLineParser

    p = OneLineParser(prog=prog, description=description)
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    return p


def numbered(path: Path, i: int, n: int) -> Path:
    """``path`` itself for one input, else ``stem_<i+1>.suffix``."""
    return path if n == 1 else path.with_name(f"{path.stem}_{i + 1}{path.suffix}")


def predict_line(c) -> str:
    """One prediction as ``label (p = 0.93)``."""
    return f"{c.label} (p = {c.probability:.3f})"


def make_commands(name: str, load: Callable[[Path], LoadedClassifier], default_data: Path):
    """(predict, eval) command functions for the task ``name``, loading runs with ``load``;
    ``default_data``: the data file of runs trained without ``data.path``."""

    def cmd_predict(argv: list[str]) -> int:
        from rnnkit.plots import check_writable
        from rnnkit.plots_eval import plot_word_weights

        p = _parser("rnnkit predict", f"The label of texts under a trained {name} run.")
        p.add_argument("texts", nargs="+", help="the texts to classify")
        p.add_argument(
            "--attention", default=None, help="write the words shaded by attention to this PNG"
        )
        a = p.parse_args(argv)
        empty = [i + 1 for i, t in enumerate(a.texts) if not t.split()]
        if empty:
            raise UserError(f"predict: text {empty[0]} is empty: there is nothing to classify")
        if a.attention:
            check_writable(a.attention, "--attention")
        loaded = load(Path(a.run))
        if a.attention and loaded.cfg.model.pool != "attention":
            raise UserError(
                f"--attention: {loaded.path} pools with {loaded.cfg.model.pool!r}, not "
                "attention (train with --model.pool attention)"
            )
        for i, c in enumerate(classify(loaded, a.texts)):
            unknown = [t for t in c.tokens if t not in loaded.vocab.word_ids]
            note = f"  (unknown words: {' '.join(unknown)})" if unknown else ""
            print(f"{a.texts[i]}\t{predict_line(c)}{note}")
            if a.attention:
                path = numbered(Path(a.attention), i, len(a.texts))
                title = f"{name}: {predict_line(c)}"
                print(plot_word_weights(c.tokens, c.attention, path, title=title))
        return 0

    def cmd_eval(argv: list[str]) -> int:
        from rnnkit.files import atomic_write
        from rnnkit.plots_eval import plot_confusion
        from rnnkit.tasks.eval_files import add_out_options, eval_output

        p = _parser("rnnkit eval", f"Accuracy and confusion matrix of a {name} run.")
        p.add_argument("--split", default="test", choices=("test", "val"), help="(default test)")
        p.add_argument("--data", default=None, help="another data file (default: the run's)")
        add_out_options(p, "the confusion matrix")
        p.add_argument("--show", type=int, default=5, help="print this many wrong predictions")
        a = p.parse_args(argv)
        if a.show < 0:
            raise UserError(f"--show must be >= 0, got {a.show}")
        run = Path(a.run)
        out = eval_output(run, a.out, a.split, a.force)
        loaded = load(run)
        cfg = loaded.cfg.data
        path = Path(a.data or cfg.path or default_data)
        exs = split_examples(read_examples(path, cfg.format))[a.split]
        if not exs:
            raise UserError(f"{path}: its {a.split} split is empty")
        device = next(loaded.model.parameters()).device
        sums, predicted = evaluate_examples(loaded.model, loaded.vocab, exs, device)
        classes = loaded.vocab.classes
        k = len(classes)
        truth = torch.tensor([loaded.vocab.class_ids.get(e.label, -1) for e in exs])
        unseen = sorted({e.label for e in exs if e.label not in loaded.vocab.class_ids})
        if unseen:
            raise UserError(f"{path}: labels the run never saw in training: {unseen[:5]}")
        matrix = torch.bincount(truth * k + predicted, minlength=k * k).reshape(k, k)
        accuracy = sums["correct"] / max(sums["n"], 1.0)
        majority = max(Counter(e.label for e in exs).values()) / len(exs)
        result = {
            "task": name,
            "checkpoint": str(loaded.path),
            "data": str(path),
            "split": a.split,
            "examples": len(exs),
            "accuracy": accuracy,
            "loss": sums["nll"] / max(sums["n"], 1.0),
            "majority_baseline": majority,
            "classes": classes,
            "confusion": matrix.tolist(),
            "recall": {
                c: float(matrix[i, i] / max(int(matrix[i].sum()), 1)) for i, c in enumerate(classes)
            },
        }
        print(
            f"{name} {a.split}: {len(exs)} sentences, accuracy {accuracy:.4f} "
            f"(majority class {majority:.4f})"
        )
        wrong = [
            (e, classes[int(g)])
            for e, g in zip(exs, predicted, strict=True)
            if classes[int(g)] != e.label
        ]
        for e, g in wrong[: a.show]:
            print(f"  wrong: {e.text[:100]!r} -> {g} (true {e.label})")
        text = json.dumps(result, indent=2) + "\n"
        atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
        title = f"{name} ({a.split} split)"
        png = plot_confusion(matrix, classes, out.with_suffix(".png"), title=title)
        print(f"results: {out}, {png}")
        return 0

    return cmd_predict, cmd_eval


def hooks(name: str, load_spec: Callable, default_data: Path) -> dict:
    """The ``TaskSpec`` fields of a text-classification task: ``load``, ``predict`` and the
    ``predict``/``eval`` run commands.

    Args:
        name: the task's name.
        load_spec: the ``TaskSpec.load`` (``text_classify.loader(ConfigClass)``).
        default_data: the data file of runs trained without ``data.path``.
    """
    from rnnkit.tasks.runs import load_run

    def load(run: Path) -> LoadedClassifier:
        return load_run(run, load_spec, f"a {name} run")

    from rnnkit.tasks.text_classify_ngrams import finish

    cmd_predict, cmd_eval = make_commands(name, load, default_data)
    return {
        "load": load_spec,
        "finish": finish,
        "predict": lambda loaded, text: predict_line(classify(loaded, [text])[0]),
        "run_commands": {
            "predict": (cmd_predict, f"the label of texts under a {name} run (--attention PNG)"),
            "eval": (cmd_eval, f"test accuracy and the confusion matrix PNG of a {name} run"),
        },
    }
