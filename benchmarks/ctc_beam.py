"""CTC beam search speed: rnnkit.ctc.beam_search at beam 10, with and without a character
language model, side by side with pyctcdecode (when it can be run), as JSON.

Workloads (seeded, synthetic posteriors with the shape of a trained recogniser's: each symbol
held for a few frames, blanks between, a peaked softmax with noise and some confusable frames):

- ``lines``: 100 lines of the bundled Shakespeare (OCR-like; ~70 symbols), 2-4 frames a char;
- ``speech``: 100 strings of 1-7 digits spelled as words ("four oh nine"), one frame per
  20 ms (10 ms hop, 2x subsampled), so a second of audio is 50 frames.

Timed per workload: rnnkit greedy; rnnkit beam 10 one line at a time (B = 1, as pyctcdecode
decodes), in batches of 32 and the whole set as one batch, with pyctcdecode's token pruning
(-5) and with rnnkit's default (-10); with the LM (alpha 0.5, beta 1.0: a CharLM on ``--lm
RUN``, or, without it, an untrained LanguageModel of the charlm default architecture (GRU 2 x
512): the cost of stepping the network does not depend on its weights); pyctcdecode beam 10
(no LM; with a KenLM word bigram when kenlm imports) with its default pruning (token_min_logp
-5, beam_prune_logp -10). Both sides use beam_prune_logp -10.

pyctcdecode pins numpy < 2, which rnnkit's environment does not allow: it runs in a separate
virtual environment given by ``--pyctcdecode-python`` (default /tmp/pyctc_venv/bin/python),
fed the same log-probabilities through a .npy file. Medians over ``--repeats`` passes.

    .venv/bin/python benchmarks/ctc_beam.py [--quick] [--out docs/ctc_beam.json]

writes the JSON and a picture of it beside it (docs/ctc_beam.png; ``--plot-only`` redraws it).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from rnnkit.ctc import CharLM, beam_search, cer, greedy_decode
from rnnkit.files import atomic_write

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "src/rnnkit/data/corpora/shakespeare.txt.gz"
DIGITS = "zero one two three four five six seven eight nine oh".split()
FRAMES_PER_SECOND = 50


def texts(workload: str, n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    if workload == "speech":
        return [" ".join(rng.choice(DIGITS) for _ in range(rng.randint(1, 7))) for _ in range(n)]
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        lines = [s.strip() for s in f.read().splitlines() if 25 <= len(s.strip()) <= 60]
    return rng.sample(lines, n)


def posteriors(text: str, index: dict[str, int], rng: np.random.Generator, frames=(2, 4)):
    """(T, C) log-probabilities of a recogniser reading ``text``: symbols held 2-4 frames,
    0-2 blank frames between (one at least between repeats), logits = 12 on the symbol + N(0, 2)
    one frame in 25 with a second symbol at 10.5."""
    C = len(index) + 1
    seq: list[int] = [0] * int(rng.integers(1, 3))
    for i, ch in enumerate(text):
        gap = int(rng.integers(0, 3))
        if i and text[i - 1] == ch:
            gap = max(gap, 1)
        seq += [0] * gap + [index[ch]] * int(rng.integers(frames[0], frames[1] + 1))
    seq += [0] * int(rng.integers(1, 3))
    logits = rng.normal(0.0, 2.0, (len(seq), C))
    logits[np.arange(len(seq)), seq] += 12.0
    confused = rng.random(len(seq)) < 0.04
    logits[confused, rng.integers(0, C, confused.sum())] += 10.5
    return torch.log_softmax(torch.tensor(logits, dtype=torch.float32), -1)


def batch(lps: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    T = max(len(x) for x in lps)
    out = torch.full((T, len(lps), lps[0].shape[1]), -1e4)
    out[:, :, 0] = 0.0
    for b, x in enumerate(lps):
        out[: len(x), b] = x
    return out, torch.tensor([len(x) for x in lps])


def median_seconds(fn, repeats: int) -> tuple[float, float, object]:
    """Median wall-clock and CPU seconds of ``repeats`` calls, and the last result."""
    wall, cpu, result = [], [], None
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(wall), statistics.median(cpu), result


def write_arpa(path: Path, sentences: list[str], discount: float = 0.75) -> None:
    """A word bigram model with absolute discounting and back-off to unigrams, in ARPA format
    (pyctcdecode's KenLM reads it): p(w | v) = (c(v w) - D) / c(v) + λ(v) p(w) for seen pairs,
    back-off weight λ(v) = D N1+(v ·) / c(v) renormalised over the unseen words."""
    from collections import Counter

    uni, bi = Counter(), Counter()
    for s in sentences:
        words = ["<s>", *s.split(), "</s>"]
        uni.update(words[1:])
        bi.update(zip(words[:-1], words[1:], strict=False))
    total = sum(uni.values())
    p_uni = {w: c / total for w, c in uni.items()}
    ctx = Counter()
    for (v, _), c in bi.items():
        ctx[v] += c
    followers: dict[str, list[str]] = {}
    for v, w in bi:
        followers.setdefault(v, []).append(w)
    lines_bi, backoff = [], {}
    for v, ws in followers.items():
        lam = discount * len(ws) / ctx[v]
        probs = {w: (bi[v, w] - discount) / ctx[v] + lam * p_uni[w] for w in ws}
        seen = sum(p_uni[w] for w in ws)
        backoff[v] = (1.0 - sum(probs.values())) / max(1.0 - seen, 1e-12)
        lines_bi += [f"{math.log10(p):.6f}\t{v} {w}" for w, p in probs.items()]
    vocab = ["<unk>", "<s>", *sorted(uni)]
    lines_uni = []
    for w in vocab:
        lp = -99.0 if w == "<s>" else math.log10(p_uni.get(w, 1e-7))
        bo = f"\t{math.log10(max(backoff[w], 1e-12)):.6f}" if w in backoff else ""
        lines_uni.append(f"{lp:.6f}\t{w}{bo}")
    text = ["\\data\\", f"ngram 1={len(lines_uni)}", f"ngram 2={len(lines_bi)}", ""]
    text += ["\\1-grams:", *lines_uni, "", "\\2-grams:", *lines_bi, "", "\\end\\", ""]
    path.write_text("\n".join(text), encoding="utf-8")


def make_lm(alphabet: list[str], run: str | None) -> CharLM:
    if run:
        return CharLM.from_run(run, alphabet)
    from rnnkit.tasks.charlm import default
    from rnnkit.tasks.lm import LanguageModel

    torch.manual_seed(0)
    chars = sorted(set(alphabet[1:]) | {"\n"})
    model = LanguageModel(len(chars), default().model)
    stoi = {c: i for i, c in enumerate(chars)}
    return CharLM(model, stoi, alphabet, start_ids=[stoi["\n"]])


PYCTC = r"""
import json, statistics, sys, time
import numpy as np
from pyctcdecode import build_ctcdecoder
spec = json.load(open(sys.argv[1]))
data = np.load(spec["npz"])
lps = [data[f"x{i}"] for i in range(spec["n"])]
out = {}
kenlm_path = spec.get("kenlm")
configs = [("none", None)] + ([("kenlm", kenlm_path)] if kenlm_path else [])
for name, path in configs:
    dec = build_ctcdecoder(spec["labels"], kenlm_model_path=path, alpha=0.5, beta=1.0)
    wall, cpu = [], []
    for _ in range(spec["repeats"]):
        start, start_cpu = time.perf_counter(), time.process_time()
        texts = [dec.decode(x, beam_width=spec["beam"]) for x in lps]
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    out[name] = {"seconds": statistics.median(wall), "cpu_seconds": statistics.median(cpu),
                 "texts": texts}
print(json.dumps(out))
"""


def run_pyctcdecode(python: str, lps, alphabet, beam, repeats, lm_text) -> dict | str:
    """pyctcdecode's medians in its own environment (without an LM, and with a KenLM word
    bigram of ``lm_text`` if given), or why it could not run."""
    if not Path(python).exists():
        return f"no pyctcdecode environment at {python}"
    with tempfile.TemporaryDirectory() as tmp:
        kenlm = None
        if lm_text:
            kenlm = str(Path(tmp) / "words.arpa")
            write_arpa(Path(kenlm), lm_text)
        npz = Path(tmp) / "lps.npz"
        np.savez(npz, **{f"x{i}": x.numpy() for i, x in enumerate(lps)})
        labels = [""] + alphabet[1:]  # pyctcdecode's blank is ""
        spec = {"npz": str(npz), "n": len(lps), "labels": labels, "beam": beam,
                "repeats": repeats, "kenlm": kenlm}  # fmt: skip
        (Path(tmp) / "spec.json").write_text(json.dumps(spec))
        (Path(tmp) / "run.py").write_text(PYCTC)
        proc = subprocess.run(
            [python, str(Path(tmp) / "run.py"), str(Path(tmp) / "spec.json")],
            capture_output=True,
            text=True,
        )
    if proc.returncode:
        return "pyctcdecode failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def lm_sentences(name: str) -> list[str]:
    """What the KenLM word bigram for pyctcdecode is estimated on: the whole corpus (lines), or
    5,000 other digit strings (speech)."""
    if name == "speech":
        return texts("speech", 5000, seed=7)
    with gzip.open(CORPUS, "rt", encoding="utf-8") as f:
        return [s.strip() for s in f.read().splitlines() if s.strip()]


def workload(name: str, args) -> dict:
    refs = texts(name, args.lines, seed=1)
    alphabet = ["<b>", *sorted(set("".join(refs)))]
    index = {c: i for i, c in enumerate(alphabet) if i}
    rng = np.random.default_rng(2)
    lps = [posteriors(t, index, rng) for t in refs]
    x, lens = batch(lps)
    frames = int(lens.sum())
    decode = lambda labels: "".join(alphabet[k] for k in labels)  # noqa: E731
    K, R = args.beam, args.repeats
    one = dict(beam_width=K, prune_logp=-5.0)  # pyctcdecode's token_min_logp

    def in_batches(size, **options):
        out = []
        for s in range(0, len(lps), size):
            out += beam_search(x[:, s : s + size], lens[s : s + size], **options)
        return out

    cases = {
        "rnnkit greedy": lambda: greedy_decode(x, lens),
        "rnnkit beam, one line at a time": lambda: [beam_search(v[:, None], **one)[0] for v in lps],
        "rnnkit beam, batches of 32": lambda: in_batches(32, **one),
        "rnnkit beam, all lines as one batch": lambda: beam_search(x, lens, **one),
        "rnnkit beam, one batch, prune_logp -10 (rnnkit's default)": lambda: beam_search(
            x, lens, beam_width=K
        ),
    }
    if not args.quick:
        lm = make_lm(alphabet, args.lm)
        fused = dict(one, lm=lm, alpha=0.5, beta=1.0)
        cases["rnnkit beam + char LM, one line at a time"] = lambda: [
            beam_search(v[:, None], **fused)[0] for v in lps
        ]
        cases["rnnkit beam + char LM, batches of 32"] = lambda: in_batches(32, **fused)
    rows = []
    for label, fn in cases.items():
        wall, cpu, out = median_seconds(fn, R)
        hyps = [decode(h if label.endswith("greedy") else h[0][0]) for h in out]
        rows.append(row(label, wall, cpu, len(lps), frames, cer(refs, hyps), hyps))
    lm_text = None if args.quick else lm_sentences(name)
    py = run_pyctcdecode(args.pyctcdecode_python, lps, alphabet, K, R, lm_text)
    if isinstance(py, str):
        print(f"{name}: pyctcdecode not compared: {py}", flush=True)
    else:
        for key, res in py.items():
            label = "pyctcdecode beam" + (" + KenLM word bigram" if key == "kenlm" else "")
            hyps = [h.strip() for h in res["texts"]]
            wall, cpu = res["seconds"], res["cpu_seconds"]
            rows.append(row(label, wall, cpu, len(lps), frames, cer(refs, hyps), hyps))
    base = next((r for r in rows if r["decoder"] == "pyctcdecode beam"), None)
    base_hyps = base["hyps"] if base is not None else None
    for r in rows:
        hyps = r.pop("hyps")
        if base is not None:
            r["speedup_vs_pyctcdecode"] = base["seconds"] / r["seconds"]
            r["cpu_speedup_vs_pyctcdecode"] = base["cpu_seconds"] / r["cpu_seconds"]
            same = [a == b for a, b in zip(hyps, base_hyps, strict=True)]
            r["same_top_as_pyctcdecode"] = float(np.mean(same))
        print(f"{name}: {r['decoder']}: {r['ms_per_line']:.2f} ms/line, "
              f"{r['ms_per_audio_second']:.2f} ms per second of audio, CER {r['cer']:.4f}"
              + (f", x{r['speedup_vs_pyctcdecode']:.2f} vs pyctcdecode" if base else ""),
              flush=True)  # fmt: skip
    return {
        "workload": name, "lines": len(lps), "symbols": len(alphabet), "frames": frames,
        "audio_seconds": frames / FRAMES_PER_SECOND, "rows": rows,
        "pyctcdecode": None if isinstance(py, dict) else py,
    }  # fmt: skip


def row(label, wall, cpu, n, frames, rate, hyps) -> dict:
    return {
        "decoder": label, "seconds": wall, "cpu_seconds": cpu, "ms_per_line": 1e3 * wall / n,
        "ms_per_audio_second": 1e3 * wall / (frames / FRAMES_PER_SECOND),
        "cer": rate, "hyps": hyps,
    }  # fmt: skip


def draw(results: dict, path: Path) -> Path:
    """Bars of CPU milliseconds per line (lines) and per second of audio (speech), per decoder."""
    from rnnkit.plots import figure, save_figure

    fig, axes = figure((11, 4.8), 1, 2)
    for ax, w in zip(axes[0], results["workloads"], strict=True):
        per = w["lines"] if w["workload"] == "lines" else w["audio_seconds"]
        names = [r["decoder"] for r in w["rows"]]
        values = [1e3 * r["cpu_seconds"] / per for r in w["rows"]]
        colours = ["tab:orange" if n.startswith("pyctcdecode") else "tab:blue" for n in names]
        ax.barh(range(len(names)), values, color=colours)
        ax.set_yticks(range(len(names)), [n.replace(", ", ",\n", 1) for n in names], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        unit = "line" if w["workload"] == "lines" else "second of audio"
        ax.set_xlabel(f"CPU ms per {unit} (log scale)")
        ax.set_title(f"{w['workload']}: {w['lines']} items, beam {results['beam']}")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.2f}", va="center", fontsize=7)
    return save_figure(fig, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=None, help="lines per workload (100)")
    p.add_argument("--beam", type=int, default=10)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--lm", default=None, help="a charlm run for the LM rows (default: untrained)")
    p.add_argument("--pyctcdecode-python", default="/tmp/pyctc_venv/bin/python")
    p.add_argument("--quick", action="store_true", help="5 lines, 1 repeat, no LMs: a smoke test")
    p.add_argument("--out", default=str(ROOT / "docs/ctc_beam.json"))
    p.add_argument("--plot-only", action="store_true", help="redraw the PNG of --out's JSON")
    args = p.parse_args(argv)
    png = Path(args.out).with_suffix(".png")
    if args.plot_only:
        print(f"wrote {draw(json.loads(Path(args.out).read_text()), png)}")
        return 0
    if args.quick:
        args.lines, args.repeats = args.lines or 5, 1
    args.lines = args.lines or 100
    torch.set_num_threads(1)
    results = {
        "command": "python benchmarks/ctc_beam.py " + " ".join(argv or sys.argv[1:]),
        "beam": args.beam, "repeats": args.repeats, "torch_threads": 1,
        "lm": args.lm or "untrained LanguageModel, charlm default architecture (GRU 2x512)",
        "workloads": [workload(w, args) for w in ("lines", "speech")],
    }  # fmt: skip
    atomic_write(Path(args.out), json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out} and {draw(results, png)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
