"""What the sequence-to-sequence tasks add to the command line: loading a run (or an ensemble
of runs) back, ``rnnkit predict`` (outputs for inputs, attention maps) and ``rnnkit eval``
(held-out scores by source length)."""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

from rnnkit.data.pairs import PairVocab
from rnnkit.ensemble import Ensemble
from rnnkit.errors import UserError
from rnnkit.seq2seq import Seq2Seq
from rnnkit.tasks.runs import load_run
from rnnkit.tasks.seq2seq_config import check_seq2seq_config
from rnnkit.tasks.seq2seq_task import (
    Example,
    Recipe,
    attention_map,
    evaluate_examples,
    predict,
)
from rnnkit.train.restore import restore_model
from rnnkit.train.train_config import check_seed


# ---- loading a run ---------------------------------------------------------------------------
@dataclass
class LoadedSeq2Seq:
    name: str
    cfg: object
    vocab: PairVocab
    model: Seq2Seq
    meta: dict
    path: Path
    recipe: Recipe


def load_seq2seq_run(run: Path) -> LoadedSeq2Seq:
    """A trained sequence-to-sequence run (its best checkpoint, else the last) or checkpoint."""
    return load_run(run, load_seq2seq, "a sequence-to-sequence task")


def load_seq2seq(ckpt, path: Path) -> LoadedSeq2Seq:
    """A sequence-to-sequence task's checkpoint (``TaskSpec.load`` of those tasks)."""
    from rnnkit.tasks.base import registry

    name = ckpt.meta["task"]
    spec = registry()[name]
    recipe = spec.build.__self__
    assert isinstance(recipe, Recipe), f"{name}: a sequence-to-sequence task builds by its Recipe"

    def build(cfg, vocab):
        return Seq2Seq(len(vocab.source), len(vocab.target), cfg.model)

    def check(cfg):
        check_seq2seq_config(cfg.model)  # the library's ValueError, as one line naming the key

    config_type = type(spec.presets[spec.default_preset]())
    cfg, vocab, model = restore_model(ckpt, path, config_type, build, PairVocab.from_dict, check)
    return LoadedSeq2Seq(name, cfg, vocab, model, ckpt.meta, path, recipe)


def load_seq2seq_ensemble(runs: list[Path]) -> LoadedSeq2Seq:
    """Several runs of one task and one vocabulary as an ``Ensemble``: the first run's options
    (data, splits, decoding limits) apply; a run of another task or vocabulary is an error."""
    loaded = [load_seq2seq_run(Path(r)) for r in runs]
    first = loaded[0]
    for other in loaded[1:]:
        if other.name != first.name:
            raise UserError(
                f"{other.path}: a {other.name!r} run cannot join an ensemble of {first.name!r}"
            )
        if other.meta["vocab"] != first.meta["vocab"]:
            raise UserError(
                f"{other.path}: its vocabulary differs from {first.path}'s: the models of an "
                "ensemble must share one (train them on the same data)"
            )
    model = Ensemble([x.model for x in loaded]).eval()
    return LoadedSeq2Seq(
        first.name, first.cfg, first.vocab, model, first.meta, first.path, first.recipe
    )


def decode_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--beam", type=int, default=0, help="beam search of this width (0: greedy)")
    p.add_argument("--alpha", type=float, default=0.0, help="beam length penalty exponent")
    p.add_argument("--sample", action="store_true", help="sample instead of the likeliest")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: mass p")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--max-len", type=int, default=0, help="longest output (0: the run's)")
    p.add_argument("--batch-size", type=int, default=64, help="inputs decoded at once")
    p.add_argument(
        "--ensemble",
        nargs="+",
        default=None,
        metavar="RUN",
        help="more runs of the same task and vocabulary: decode with all of them, "
        "averaging their next-token probabilities",
    )
    return p


def load_decoder(a):
    """The run (or, with --ensemble, the runs) that ``predict`` and ``eval`` decode with."""
    if a.ensemble:
        return load_seq2seq_ensemble([Path(a.run), *map(Path, a.ensemble)])
    return load_seq2seq_run(Path(a.run))


def decode_options(a, loaded, n_best: int = 1) -> dict:
    check_seed(a.seed)
    if a.beam < 0:
        raise UserError(f"--beam must be >= 0, got {a.beam}")
    if not math.isfinite(a.alpha):
        raise UserError(f"--alpha must be a finite number, got {a.alpha}")
    if a.beam and a.sample:
        raise UserError("--beam and --sample exclude each other")
    if a.max_len < 0 or a.batch_size < 1:
        raise UserError("--max-len must be >= 0 and --batch-size >= 1")
    method = "beam" if a.beam else "sample" if a.sample else "greedy"
    if loaded.cfg.train.threads:  # the run's thread count (1 for the small seq2seq presets)
        import torch

        torch.set_num_threads(loaded.cfg.train.threads)
    return {
        "method": method,
        "beam": max(a.beam, 1),
        "n_best": n_best,
        "alpha": a.alpha,
        "temperature": a.temperature,
        "top_k": a.top_k,
        "top_p": a.top_p,
        "seed": a.seed,
        "max_len": a.max_len or loaded.cfg.decode.max_len,
        "batch_size": a.batch_size,
    }


def cmd_predict(argv: list[str]) -> int:
    from rnnkit.plots import plot_attention

    p = decode_parser("rnnkit predict", "Outputs of a sequence-to-sequence run for inputs.")
    p.add_argument("inputs", nargs="+", help="the input texts")
    p.add_argument("--n-best", type=int, default=1, help="beam search: show the N best")
    p.add_argument("--attention", default=None, help="write the attention map(s) to this PNG")
    a = p.parse_args(argv)
    if a.attention and a.ensemble:
        raise UserError("--attention draws one model's weights: leave out --ensemble")
    if a.attention:
        from rnnkit.plots import check_writable

        check_writable(a.attention, "--attention")
    loaded = load_decoder(a)
    if a.n_best > 1 and not a.beam:
        raise UserError("--n-best needs --beam K with K >= N")
    options = decode_options(a, loaded, a.n_best)
    outputs = predict(loaded.model, loaded.vocab, a.inputs, **options)
    for i, (text, outs) in enumerate(zip(a.inputs, outputs, strict=True)):
        unknown = loaded.vocab.source.unknown(text)
        note = f"  (unknown to the model, read as <unk>: {' '.join(unknown)})" if unknown else ""
        if len(outs) == 1:
            print(f"{text}\t{outs[0][0]}{note}")
        else:
            print(f"{text}{note}")
            for rank, (out, score) in enumerate(outs, 1):
                print(f"  {rank}. {out}\t(score {score:.4f})")
        if a.attention:
            found = attention_map(loaded.model, loaded.vocab, text, outs[0][0])
            if found is None:
                raise UserError(f"--attention: {loaded.path} was trained without attention")
            path = Path(a.attention)
            if len(a.inputs) > 1:
                path = path.with_name(f"{path.stem}_{i + 1}{path.suffix}")
            weights, xs, ys = found
            print(plot_attention(weights, path, source=xs, output=ys, title=f"{text!r}"))
    return 0


def eval_output(a) -> Path:
    """The results JSON of ``eval`` (``rnnkit.tasks.eval_files``); an ensemble's default name
    says how many models it mixes."""
    from rnnkit.tasks.eval_files import eval_output as output

    suffix = f"_ensemble{len(a.ensemble) + 1}" if a.ensemble else ""
    return output(a.run, a.out, a.split + suffix, a.force)


def cmd_eval(argv: list[str]) -> int:
    import json

    from rnnkit.files import atomic_write
    from rnnkit.plots import plot_by_length
    from rnnkit.tasks.eval_files import add_out_options

    p = decode_parser("rnnkit eval", "Scores of a sequence-to-sequence run on a held-out split.")
    p.add_argument(
        "--split",
        default="test",
        choices=("test", "val", "train"),
        help="(default: test; train: how closely the model fits its own training pairs)",
    )
    p.add_argument("--limit", type=int, default=0, help="only the first N examples (0: all)")
    add_out_options(p, "score by source length")
    p.add_argument("--show", type=int, default=5, help="print this many wrong outputs")
    a = p.parse_args(argv)
    if a.limit < 0:
        raise UserError(f"--limit must be >= 0, got {a.limit}")
    if a.show < 0:
        raise UserError(f"--show must be >= 0, got {a.show}")
    out = eval_output(a)  # refused before the decoding, not after it
    loaded = load_decoder(a)
    options = decode_options(a, loaded)
    examples = loaded.recipe.examples(loaded.cfg)[a.split]
    if a.split == "train":
        examples = with_all_references(examples)
    if a.limit:
        examples = examples[: a.limit]
    scorer = loaded.recipe.scorer()
    result, hyps = evaluate_examples(
        loaded.model, loaded.vocab, examples, scorer, progress=True, **options
    )
    decoding = {k: v for k, v in options.items() if k != "batch_size"}
    result = {
        "task": loaded.name,
        "checkpoint": str(loaded.path),
        "split": a.split,
        "decoding": decoding,
        **result,
    }
    if a.ensemble:
        result["ensemble"] = [str(loaded.path), *a.ensemble]
    names = scorer.names
    print(f"{loaded.name} {a.split}: {len(examples)} examples, {options['method']} decoding")
    print("  " + ", ".join(f"{n} {result[n]:.4f}" for n in names))
    print(
        "  by source length: "
        + "; ".join(
            f"{b} (n={r['examples']}): " + ", ".join(f"{n} {r[n]:.3f}" for n in names)
            for b, r in result["by_source_length"].items()
        )
    )
    wrong = [(ex, h) for ex, h in zip(examples, hyps, strict=True) if h not in ex.references()]
    for ex, h in wrong[: a.show]:
        print(f"  wrong: {ex.source!r} -> {h!r} (expected {ex.target!r})")
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    png = plot_by_length(
        {loaded.name: {b: r[names[0]] for b, r in result["by_source_length"].items()}},
        out.with_suffix(".png"),
        metric=names[0],
        counts={b: r["examples"] for b, r in result["by_source_length"].items()},
        title=f"{loaded.name} ({a.split}): {names[0]} by source length",
    )
    print(f"results: {out}, {png}")
    return 0


def with_all_references(examples: list[Example]) -> list[Example]:
    """One example per distinct source, in first-seen order, every target of that source among
    its references: a training split lists a source once per target (a word's variant
    pronunciations), and any of them is a right output, as in the held-out splits."""
    targets: dict[str, list[str]] = {}
    for ex in examples:
        refs = targets.setdefault(ex.source, [])
        refs += [r for r in ex.references() if r not in refs]
    return [Example(src, refs[0], tuple(refs)) for src, refs in targets.items()]


def predict_one(loaded: LoadedSeq2Seq, text: str) -> str:
    """The greedy output for one input."""
    options = {"method": "greedy", "max_len": loaded.cfg.decode.max_len}
    return predict(loaded.model, loaded.vocab, [text], **options)[0][0][0]


def hooks() -> dict:
    """The ``TaskSpec`` fields that every sequence-to-sequence task shares."""
    return {
        "load": load_seq2seq,
        "predict": predict_one,
        "run_commands": {
            "predict": (cmd_predict, "outputs of a sequence-to-sequence run for inputs"),
            "eval": (cmd_eval, "held-out scores of a sequence-to-sequence run, by source length"),
        },
    }
