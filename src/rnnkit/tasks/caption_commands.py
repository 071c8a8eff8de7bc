"""What ``rnnkit train caption`` adds to the command line: loading a run back, ``rnnkit predict``
(the caption of scene pictures; ``--attention`` draws, per generated word, the image with that
word's attention weights over it: the figure of Xu et al. 2015), ``rnnkit eval`` (BLEU-4 and the
scene scores on both held-out splits) and ``rnnkit caption-scene`` (a held-out scene as a PNG).

A held-out scene is named ``test:N`` or ``compositional:N``: scene N of that split, the same
scene that ``rnnkit eval`` scores and ``rnnkit caption-scene --split S --seed N`` writes.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from rnnkit.argparse_config import OneLineParser
from rnnkit.data.pairs import BOS, EOS, TokenVocab, pad
from rnnkit.errors import UserError
from rnnkit.tasks import caption_data as D
from rnnkit.tasks.caption_model import SIDE, CaptionModel
from rnnkit.tasks.caption_task import TEST_SEED, CaptionConfig, decode, load_vocab, score
from rnnkit.tasks.runs import load_task_run
from rnnkit.train.restore import LoadedModel, model_loader

HELD_OUT_SPLITS = ("test", "compositional")
_SCENE = re.compile(rf"({'|'.join(HELD_OUT_SPLITS)}):(\d+)$")


@dataclass
class LoadedCaption(LoadedModel):
    model: CaptionModel
    vocab: TokenVocab
    cfg: CaptionConfig


def build_model(cfg: CaptionConfig, vocab: TokenVocab) -> CaptionModel:
    return CaptionModel(len(vocab), cfg.model)


# a caption checkpoint (``TaskSpec.load``): the model in eval mode and its vocabulary
load_caption = model_loader(LoadedCaption, CaptionConfig, build_model, load_vocab)


def load_caption_run(run) -> LoadedCaption:
    return load_task_run(run, load_caption, "a caption run")


def held_out_scene(name: str, data: str | None) -> D.Scene | None:
    """``test:N`` / ``compositional:N`` as its scene; anything else None (a file name)."""
    match = _SCENE.match(name)
    if not match:
        return None
    pool = D.load_split(data, "test")  # the test images only
    return D.make_scene(match.group(1), int(match.group(2)), TEST_SEED, pool)


def caption_of(loaded: LoadedCaption, image: torch.Tensor, beam: int = 0) -> str:
    """The caption of one scene image uint8 (84, 84)."""
    x = D.scene_batch([D.Scene(image, (), "")])
    return decode(loaded.model, x, loaded.vocab, loaded.cfg.decode.max_len, beam)[0]


def predict_one(loaded: LoadedCaption, text: str) -> str:
    """``TaskSpec.predict``: the greedy caption of one picture file (or held-out scene)."""
    scene = held_out_scene(text, loaded.cfg.data.path)
    return caption_of(loaded, scene.image if scene else D.read_scene(text))


def attention_weights(loaded: LoadedCaption, image: torch.Tensor, text: str):
    """(words + <eos>, α (T, 7, 7)) of ``text`` given the image (teacher-forced: the weights
    with which it was generated); None for a model without attention."""
    ids = loaded.vocab.encode(text)
    y_in, _ = pad([[BOS, *ids]])
    with torch.no_grad():
        _, alpha = loaded.model(D.scene_batch([D.Scene(image, (), "")]), y_in)
    if alpha is None:
        return None
    words = [*loaded.vocab.pieces(ids), loaded.vocab.tokens[EOS]]
    return words, alpha[:, 0].reshape(-1, SIDE, SIDE)


def plot_attention_over_image(image, words, alpha, path, title: str = "") -> Path:
    """The scene, then one panel per word: the scene in grey with the word's weights over the
    7x7 grid drawn over it (bilinear, in colour), as in Xu et al. 2015's figures."""
    import torch.nn.functional as F

    from rnnkit.plots import figure, save_figure, wrap_title

    cols = min(6, len(words) + 1)
    rows = -(-(len(words) + 1) // cols)
    fig, axes = figure((2.0 * cols, 2.2 * rows), rows, cols)
    up = F.interpolate(alpha[:, None].float(), size=(D.CANVAS, D.CANVAS), mode="bilinear")
    panels = [("(scene)", None), *((w, up[t, 0]) for t, w in enumerate(words))]
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= len(panels):
            continue
        word, weights = panels[k]
        ax.imshow(image.numpy(), cmap="gray", vmin=0, vmax=255)
        if weights is not None:
            ax.imshow(weights.numpy(), cmap="jet", alpha=0.5, vmin=0)
        ax.set_title(word, fontsize=10)
    fig.suptitle(wrap_title(title, 2.0 * cols), fontsize=10)
    return save_figure(fig, path)


def _run_parser(prog: str, description: str) -> OneLineParser:
    p = OneLineParser(prog=prog, description=description)
    p.add_argument("run", help="a caption run directory or checkpoint file")
    p.add_argument("--beam", type=int, default=0, help="beam search of this width (0: greedy)")
    p.add_argument("--data", default=None, help="the Fashion-MNIST directory (default: the run's)")
    return p


def cmd_predict(argv: list[str]) -> int:
    from rnnkit.plots import check_writable

    p = _run_parser("rnnkit predict", "The captions of scene pictures under a caption run.")
    p.add_argument(
        "inputs",
        nargs="+",
        help=f"scene pictures ({D.CANVAS}x{D.CANVAS}, e.g. from rnnkit caption-scene), or "
        "test:N / compositional:N for held-out scene N",
    )
    p.add_argument(
        "--attention", default=None, help="draw each word's attention over the image to this PNG"
    )
    a = p.parse_args(argv)
    if a.beam < 0:
        raise UserError(f"--beam must be >= 0, got {a.beam}")
    if a.attention:
        check_writable(a.attention, "--attention")
    loaded = load_caption_run(a.run)
    data = a.data if a.data is not None else loaded.cfg.data.path
    for i, name in enumerate(a.inputs):
        scene = held_out_scene(name, data)
        image = scene.image if scene else D.read_scene(name)
        text = caption_of(loaded, image, a.beam)
        note = f"  (true: {scene.caption})" if scene else ""
        print(f"{name}\t{text}{note}")
        if a.attention:
            found = attention_weights(loaded, image, text)
            if found is None:
                raise UserError(f"--attention: {loaded.path} was trained without attention")
            path = Path(a.attention)
            if len(a.inputs) > 1:
                path = path.with_name(f"{path.stem}_{i + 1}{path.suffix}")
            print(plot_attention_over_image(image, *found, path, title=text))
    return 0


def cmd_eval(argv: list[str]) -> int:
    from rnnkit.files import atomic_write
    from rnnkit.plots import plot_curves
    from rnnkit.tasks.eval_files import add_out_options, eval_output

    p = _run_parser(
        "rnnkit eval", "BLEU-4 and scene scores of a caption run, both held-out splits."
    )
    p.add_argument(
        "--limit", type=int, default=0, help="scenes per split (0: the run's test_scenes)"
    )
    p.add_argument("--batch-size", type=int, default=100, help="scenes decoded at once")
    add_out_options(p, "scene F1 by number of items", default="eval_DECODING")
    a = p.parse_args(argv)
    if a.beam < 0 or a.limit < 0 or a.batch_size < 1:
        raise UserError("--beam and --limit must be >= 0, --batch-size >= 1")
    decoding = f"beam{a.beam}" if a.beam else "greedy"
    out = eval_output(a.run, a.out, decoding, a.force)
    loaded = load_caption_run(a.run)
    cfg = loaded.cfg
    n = a.limit or cfg.data.test_scenes
    data = a.data if a.data is not None else cfg.data.path
    result: dict = {"task": "caption", "checkpoint": str(loaded.path), "decoding": decoding}
    result["attention"] = cfg.model.attention
    for split in HELD_OUT_SPLITS:
        pool = D.load_split(data, "test")
        scenes = [D.make_scene(split, i, TEST_SEED, pool) for i in range(n)]
        hyps = []
        for start in range(0, n, a.batch_size):
            x = D.scene_batch(scenes[start : start + a.batch_size])
            hyps += decode(loaded.model, x, loaded.vocab, cfg.decode.max_len, a.beam)
        result[split] = score(hyps, scenes)
        result[split]["examples"] = [
            {"caption": h, "true": s.caption} for h, s in list(zip(hyps, scenes, strict=True))[:5]
        ]
        r = result[split]
        print(
            f"caption {split}: {n} scenes, {decoding}: BLEU-4 {r['bleu']:.2f}, scene precision "
            f"{100 * r['precision']:.2f}%, recall {100 * r['recall']:.2f}%, F1 "
            f"{100 * r['f1']:.2f}%, scenes exact {100 * r['scenes_exact']:.1f}%"
        )
        for k, b in r["by_items"].items():
            print(
                f"  {k} items (n={b['scenes']}): precision {100 * b['precision']:.2f}%, "
                f"recall {100 * b['recall']:.2f}%, F1 {100 * b['f1']:.2f}%"
            )
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    series = {
        f"{split} F1": ([int(k) for k in by], [b["f1"] for b in by.values()])
        for split in HELD_OUT_SPLITS
        for by in [result[split]["by_items"]]
    }
    png = plot_curves(
        series,
        out.with_suffix(".png"),
        xlabel="items in the scene",
        ylabel="scene F1 of the (item, cell) pairs",
        title=f"caption ({cfg.model.attention} attention, {decoding}): scene F1 by items",
    )
    print(f"results: {out}, {png}")
    return 0


def cmd_scene(argv: list[str]) -> int:
    p = OneLineParser(
        prog="rnnkit caption-scene",
        description="Write a held-out scene of the caption task as a PNG and print its caption.",
    )
    p.add_argument("--out", required=True, help="the PNG to write")
    p.add_argument(
        "--seed", type=int, default=0, help="scene N of the split (predict's test:N), N >= 0"
    )
    p.add_argument("--split", default="test", choices=HELD_OUT_SPLITS, help="(default: test)")
    p.add_argument("--data", default=None, help="the Fashion-MNIST directory")
    a = p.parse_args(argv)
    if a.seed < 0:
        raise UserError(f"--seed must be >= 0, got {a.seed}")
    from rnnkit.plots import check_writable

    check_writable(a.out, "--out")
    scene = held_out_scene(f"{a.split}:{a.seed}", a.data)
    assert scene is not None
    D.write_scene(scene.image, a.out)
    pairs = ", ".join(f"{D.ITEMS[i]} {D.CELLS[c]}" for i, c in scene.items)
    print(f"{a.out}\t{scene.caption}  ({pairs})")
    return 0


def hooks() -> dict:
    """The ``TaskSpec`` fields of the caption task's commands."""
    return {
        "load": load_caption,
        "predict": predict_one,
        "commands": {"caption-scene": (cmd_scene, "write a held-out caption scene as a PNG")},
        "run_commands": {
            "predict": (cmd_predict, "captions of scene pictures, attention over the image"),
            "eval": (cmd_eval, "BLEU-4 and scene P/R/F1 on the test and compositional scenes"),
        },
    }
