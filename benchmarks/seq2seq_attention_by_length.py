"""The Bahdanau experiment: translation with and without attention, BLEU by source length.

Bahdanau, Cho & Bengio (ICLR 2015, Figure 2) show that an encoder-decoder squeezing the source
into one fixed vector degrades as sentences grow longer, while attention holds up. This trains
the ``translate`` task (default: the ``bible`` preset, English -> Spanish) twice with the same
budget: ``model.attention bahdanau`` and ``model.attention none`` with the encoder summary as
initial state and as input at every step (``model.context both``, Cho et al. 2014's decoder);
then scores both on the fixed test split with sacreBLEU, overall and per source-length bucket,
and draws them side by side.

    python benchmarks/seq2seq_attention_by_length.py [--steps N] [--minutes M]
        [--out runs/attn-exp]
        [--png docs/translate_bleu_by_length.png] [--json docs/translate_bleu_by_length.json]
        [--preset bible] [--data FILE.tsv] [--limit 0] [--reuse] [-- extra training options]

Writes each run's directory (checkpoints, logs, eval_test.json), the PNG and the JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rnnkit.cli import main as rnnkit
from rnnkit.plots import plot_by_length

SYSTEMS = {
    "attention (Bahdanau)": ["--model.attention", "bahdanau", "--model.context", "init"],
    "no attention (fixed context)": ["--model.attention", "none", "--model.context", "both"],
}


def train_and_eval(run: Path, args, options: list[str]) -> dict:
    start = time.perf_counter()
    train = [
        "train",
        "translate",
        "--preset",
        args.preset,
        "--out",
        str(run),
        "--train.progress",
        "false",
    ]
    if args.minutes:
        train += ["--train.max_minutes", str(args.minutes)]
    if args.steps:
        train += ["--train.max_steps", str(args.steps)]
    if args.data:
        train += ["--data", args.data]
    if not (args.reuse and (run / "last.safetensors").exists()):
        status = rnnkit(train + options + args.extra)
        if status != 0:
            raise SystemExit(f"training {run} failed with status {status}")
    minutes = (time.perf_counter() - start) / 60
    evaluate = ["eval", str(run), "--show", "0"] + (
        ["--limit", str(args.limit)] if args.limit else []
    )
    if rnnkit(evaluate) != 0:
        raise SystemExit(f"evaluating {run} failed")
    result = json.loads((run / "eval_test.json").read_text())
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    val = [r for r in records if r["split"] == "val"]
    train_minutes = max(r["time"] for r in records if r["split"] == "train") / 60
    result.update(
        train_minutes=train_minutes,
        steps=val[-1]["step"],
        val_loss=val[-1]["loss"],
        minutes_this_call=minutes,
    )
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--steps",
        type=int,
        default=0,
        help="optimiser steps per system, the same for both (0: the preset's; bible: 9,000)",
    )
    p.add_argument(
        "--minutes",
        type=float,
        default=0.0,
        help="time limit per system (0: the preset's; bible: 90)",
    )
    p.add_argument("--out", default=f"runs/attn-exp-{time.strftime('%Y%m%d-%H%M%S')}")
    p.add_argument("--preset", default="bible", help="the translate preset")
    p.add_argument("--data", default=None, help="another tab-separated file of pairs")
    p.add_argument("--limit", type=int, default=0, help="score only the first N test pairs")
    p.add_argument("--png", default="docs/translate_bleu_by_length.png")
    p.add_argument("--json", default="docs/translate_bleu_by_length.json")
    p.add_argument("--reuse", action="store_true", help="score runs already trained in --out")
    p.add_argument("extra", nargs="*", help="more training options, after --")
    args = p.parse_args(argv)
    out = Path(args.out)
    results = {}
    for i, (label, options) in enumerate(SYSTEMS.items()):
        results[label] = train_and_eval(out / f"system{i + 1}", args, options)
        print(f"{label}: BLEU {results[label]['bleu']:.2f}")
    first = next(iter(results.values()))
    counts = {b: r["examples"] for b, r in first["by_source_length"].items()}
    plot_by_length(
        {
            label: {b: r["bleu"] for b, r in res["by_source_length"].items()}
            for label, res in results.items()
        },
        args.png,
        metric="BLEU (sacreBLEU, test split)",
        counts=counts,
        title=f"translate ({args.preset}): BLEU by source length, {first['steps']:,} steps each",
    )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.png} and {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
