"""What ``rnnkit train fashion`` runs add to the command line: ``rnnkit predict RUN IMAGE ...``
(the class of a picture and its probability) and ``rnnkit eval RUN`` (test accuracy, accuracy by
class, the confusion matrix as a PNG)."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch
from torch import Tensor

from rnnkit.errors import UserError
from rnnkit.tasks.fashion_data import (
    CLASSES,
    load_split,
    order_of,
    read_picture,
    split,
    to_sequences,
    write_picture,
)

_TEST_INDEX = re.compile(r"(test|val):(\d+)$")


def load_fashion_run(run: str | Path):
    """A trained fashion run (its best checkpoint, else the last) or a checkpoint file."""
    from rnnkit.tasks.runs import load_run

    loaded = load_run(Path(run), None)  # by the task its checkpoint names (no import cycle)
    if loaded.meta.get("task") != "fashion":
        raise UserError(f"{loaded.path} is a {loaded.meta.get('task')!r} run, not a fashion run")
    return loaded


def probabilities(loaded, images: Tensor, batch_size: int = 500) -> Tensor:
    """p(class | image) (N, 10) for uint8 images (N, 28, 28), read in the run's pixel order."""
    order, perm = order_of(loaded.cfg.data)
    model = loaded.model
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            x = to_sequences(images[start : start + batch_size], order, perm).to(device)
            out.append(model(x).softmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, len(CLASSES))


def held_out(loaded, which: str, data: str | None) -> tuple[Tensor, Tensor]:
    """(images, labels) of the run's ``which`` split: "test" (the 10,000 test images) or "val"
    (the run's own validation images); ``data`` another directory of the four files."""
    path = data if data is not None else loaded.cfg.data.path
    if which == "test":
        return load_split(path, "test")
    images, labels = load_split(path, "train")
    val = split(loaded.cfg.data, len(images))[1]
    return images[val], labels[val]


def predict_one(loaded, text: str) -> str:
    """``TaskSpec.predict``: the class of one picture file and its probability."""
    image, _ = read_picture(text)
    p = probabilities(loaded, image[None])[0]
    k = int(p.argmax())
    return f"{CLASSES[k]} ({float(p[k]):.3f})"


def _parser(prog: str, description: str) -> argparse.ArgumentParser:
    from rnnkit.argparse_config import OneLineParser

    p = OneLineParser(prog=prog, description=description)
    p.add_argument("run", help="a fashion run directory or checkpoint file")
    p.add_argument(
        "--data", default=None, help="the directory of the IDX files (default: the run's own)"
    )
    return p


def cmd_predict(argv: list[str]) -> int:
    p = _parser("rnnkit predict", "The class of pictures under a trained fashion run.")
    p.add_argument(
        "inputs",
        nargs="+",
        help="picture files (PNG, JPEG, any Pillow reads: made grey, resized to 28x28), "
        "or test:N / val:N for held-out image N",
    )
    p.add_argument(
        "--invert",
        default="auto",
        choices=("auto", "yes", "no"),
        help="make a dark-on-light picture light-on-dark like the training images "
        "(auto: when its border is brighter than mid-grey)",
    )
    p.add_argument("--top", type=int, default=1, help="show the K most probable classes")
    p.add_argument(
        "--save", default=None, help="write each input as the model sees it (28x28 PNG) here"
    )
    a = p.parse_args(argv)
    if not 1 <= a.top <= len(CLASSES):
        raise UserError(f"--top must be in [1, {len(CLASSES)}], got {a.top}")
    if a.save:
        Path(a.save).mkdir(parents=True, exist_ok=True)
    loaded = load_fashion_run(a.run)
    for i, name in enumerate(a.inputs):
        match = _TEST_INDEX.match(name)
        if match:
            images, labels = held_out(loaded, match.group(1), a.data)
            index = int(match.group(2))
            if index >= len(images):
                raise UserError(f"{name}: the {match.group(1)} split has {len(images)} images")
            image, note = images[index], f"  (true class: {CLASSES[int(labels[index])]})"
        else:
            image, inverted = read_picture(name, a.invert)
            note = "  (inverted: dark on light)" if inverted else ""
        p_class = probabilities(loaded, image[None])[0]
        best = p_class.argsort(descending=True)[: a.top].tolist()
        shown = ", ".join(f"{CLASSES[k]} {float(p_class[k]):.3f}" for k in best)
        print(f"{name}\t{shown}{note}")
        if a.save:
            stem = re.sub(r"[^\w.-]", "_", Path(name).stem) or "input"  # test:3 -> test_3
            write_picture(image, Path(a.save) / f"{i + 1:03d}_{stem}.png")
    return 0


def confusion_matrix(labels: Tensor, predicted: Tensor, k: int) -> Tensor:
    """C (k, k) int64: C[i, j] = examples of class i predicted as j."""
    return torch.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)


def cmd_eval(argv: list[str]) -> int:
    from rnnkit.files import atomic_write
    from rnnkit.plots_eval import plot_confusion
    from rnnkit.tasks.eval_files import add_out_options, eval_output

    p = _parser("rnnkit eval", "Held-out accuracy of a fashion run, by class, and confusions.")
    p.add_argument("--split", default="test", choices=("test", "val"), help="(default: test)")
    p.add_argument("--limit", type=int, default=0, help="only the first N images (0: all)")
    add_out_options(p, "the confusion matrix")
    p.add_argument("--batch-size", type=int, default=500, help="images per forward pass")
    a = p.parse_args(argv)
    if a.limit < 0:
        raise UserError(f"--limit must be >= 0, got {a.limit}")
    if a.batch_size < 1:
        raise UserError(f"--batch-size must be >= 1, got {a.batch_size}")
    out = eval_output(a.run, a.out, a.split, a.force)
    loaded = load_fashion_run(a.run)
    images, labels = held_out(loaded, a.split, a.data)
    if a.limit:
        images, labels = images[: a.limit], labels[: a.limit]
    if not len(images):
        raise UserError(f"the {a.split} split has no images")
    predicted = probabilities(loaded, images, a.batch_size).argmax(-1)
    k = len(CLASSES)
    matrix = confusion_matrix(labels, predicted, k)
    per_class = {
        CLASSES[i]: float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None
        for i in range(k)
    }
    accuracy = float(matrix.trace() / matrix.sum())
    d = loaded.cfg.data
    what = d.order + (" (permuted)" if d.order == "pixel" and d.permute else "")
    result = {
        "task": "fashion",
        "checkpoint": str(loaded.path),
        "split": a.split,
        "images": len(images),
        "order": what,
        "cell": loaded.cfg.model.cell,
        "accuracy": accuracy,
        "per_class_accuracy": per_class,
        "classes": list(CLASSES),
        "confusion": matrix.tolist(),
    }
    print(f"fashion {a.split}: {len(images)} images, {what} order, accuracy {accuracy:.4f}")
    for name, acc in per_class.items():
        print(f"  {name:<12} {'-' if acc is None else f'{acc:.4f}'}")
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    png = plot_confusion(
        matrix,
        CLASSES,
        out.with_suffix(".png"),
        title=f"Fashion-MNIST {a.split}, {what} order, {loaded.cfg.model.cell.upper()}:",
    )
    print(f"results: {out}, confusion matrix: {png}")
    return 0


def plot_accuracy_curves(
    runs: dict[str, str | Path], path: str | Path, title: str, by: str = "minutes"
) -> Path:
    """Validation accuracy of several runs ({label: run directory}), one curve each, against
    training minutes (``by="minutes"``: how far each gets in the same time; an evaluation's
    minutes are read off the training records around it) or optimiser steps (``by="steps"``:
    the same batches, whatever else the machine was doing)."""
    import numpy as np

    from rnnkit.plots import plot_curves, read_log

    if by not in ("minutes", "steps"):
        raise ValueError(f"by must be 'minutes' or 'steps', got {by!r}")
    series = {}
    for label, run in runs.items():
        records = read_log(Path(run) / "log.jsonl")
        timed = [(r["step"], r["time"]) for r in records if r.get("split") == "train"]
        val = [(r["step"], r["accuracy"]) for r in records if r.get("split") == "val"]
        if not timed or not val:
            raise UserError(f"{run}: its log has no training time or no validation accuracy yet")
        steps, seconds = zip(*timed, strict=True)
        xs = [
            float(np.interp(step, steps, seconds)) / 60 if by == "minutes" else step
            for step, _ in val
        ]
        series[label] = (xs, [accuracy for _, accuracy in val])
    xlabel = "training minutes (one thread on a shared 2-core machine)"
    return plot_curves(
        series,
        path,
        xlabel=xlabel if by == "minutes" else "optimiser steps",
        ylabel="validation accuracy",
        title=title,
    )
