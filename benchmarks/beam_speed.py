"""Beam search (K = 5) on g2p words: this checkout's ``rnnkit.decoding.beam_search`` against the
same function at an earlier commit (``--baseline``, default e94a811: before early stopping,
dropping finished sequences and the one-row first step), side by side in one process, one thread,
on a trained g2p run's model and CMUdict words, through ``rnnkit.tasks.seq2seq_task.predict``
(what ``rnnkit eval`` runs: batches of 64 words sorted by length). Four variants, each adding
one change: the baseline search on the plain decoder step (``Decoder.project_memory = False``)
and the encoder run layer by layer through the kernels (the ``"packed"`` backend "off"): what
e94a811 ran; today's search; today's step with the memory projected once per source
(``rnnkit.kernels.attention_step``); and the encoder as one packed call
(``rnnkit.layers.packed``): what ``predict`` runs now.

The baseline's module is read with ``git show BASELINE:src/rnnkit/decoding/beam.py`` and loaded
beside the current one. Each variant runs in turn, round-robin, ``--repeats`` times after one
warm-up; the figure is words per second of CPU time (time.process_time: the machine is shared),
the median. The outputs of the baseline and of today's are compared word by word.

    OMP_NUM_THREADS=1 python benchmarks/beam_speed.py --run runs/g2p --json docs/beam_speed.json
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import time
import types
from pathlib import Path

import torch

from rnnkit.kernels.backends import set_backend
from rnnkit.tasks import seq2seq_task
from rnnkit.tasks.seq2seq_commands import load_seq2seq_run

ROOT = Path(__file__).resolve().parents[1]


def baseline_beam(ref: str):
    """``beam_search`` as it was at git ``ref``."""
    shown = subprocess.run(
        ["git", "show", f"{ref}:src/rnnkit/decoding/beam.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if shown.returncode:
        first = (shown.stderr.strip().splitlines() or ["git show failed"])[0]
        raise SystemExit(f"--baseline {ref}: no beam.py there ({first})")
    source = shown.stdout
    module = types.ModuleType(f"beam_at_{ref}")
    exec(compile(source, f"beam.py@{ref}", "exec"), module.__dict__)  # our own file, from git
    return module.beam_search


def cmudict_words(path: Path, n: int, seed: int) -> list[str]:
    with open(path, encoding="latin-1") as f:
        words = sorted({line.split()[0].lower() for line in f if line[:1].isalpha()})
    random.Random(seed).shuffle(words)
    return words[:n]


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a trained g2p run (its model is decoded)")
    p.add_argument("--words", type=int, default=1280, help="CMUdict words decoded per repeat")
    p.add_argument("--data", default="../shared/data/g2p/cmudict.dict", help="CMUdict file")
    p.add_argument("--baseline", default="e94a811", help="git commit of the baseline")
    p.add_argument("--beam", type=int, default=5, help="K")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--json", default=None, help="write the results here")
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    loaded = load_seq2seq_run(Path(a.run))
    words = cmudict_words(Path(a.data), a.words, seed=0)
    current = seq2seq_task.beam_search
    # (search, whether the decoder steps on the memory projected once (attention_step), the
    # encoder's "packed" backend: one packed call, or layer by layer as before it)
    variants = {
        f"baseline ({a.baseline})": (baseline_beam(a.baseline), False, "off"),
        "search now": (current, False, "off"),
        "search and step now": (current, True, "off"),
        "rnnkit now": (current, True, "auto"),
    }
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    outputs = {}
    decoder = type(loaded.model.decoder)
    try:
        for repeat in range(a.repeats + 1):
            for name, (fn, project, encoder) in variants.items():
                seq2seq_task.beam_search = fn
                decoder.project_memory = project
                start = time.process_time()
                with set_backend("packed", encoder):
                    out = seq2seq_task.predict(
                        loaded.model, loaded.vocab, words, method="beam", beam=a.beam
                    )
                if repeat:  # the first round warms up
                    seconds[name].append(time.process_time() - start)
                outputs[name] = [o[0][0] for o in out]
    finally:
        seq2seq_task.beam_search = current
        decoder.project_memory = True
    base, now = outputs[next(iter(variants))], outputs["rnnkit now"]
    rates = {n: a.words / statistics.median(s) for n, s in seconds.items()}
    names = list(variants)
    result = {
        "run": a.run,
        "words": a.words,
        "beam": a.beam,
        "repeats": a.repeats,
        "words_per_cpu_second": {n: round(r, 1) for n, r in rates.items()},
        "speedup": round(rates["rnnkit now"] / rates[names[0]], 2),
        "same_outputs": sum(x == y for x, y in zip(base, now, strict=True)),
    }
    for n, r in rates.items():
        print(f"{n:24} {r:8.1f} words/s")
    print(f"speed-up {result['speedup']}x; same output for {result['same_outputs']}/{a.words}")
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


if __name__ == "__main__":
    main()
