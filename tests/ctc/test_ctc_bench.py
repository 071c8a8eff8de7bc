"""benchmarks/ctc_beam.py --quick runs end to end and writes its JSON (timings not checked);
its KenLM word bigram for pyctcdecode is a normalised ARPA model."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load():
    spec = importlib.util.spec_from_file_location("ctc_beam", ROOT / "benchmarks/ctc_beam.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_writes_json(tmp_path):
    out = tmp_path / "beam.json"
    args = ["--quick", "--out", str(out), "--pyctcdecode-python", str(tmp_path / "none")]
    assert load().main(args) == 0
    assert (tmp_path / "beam.png").read_bytes()[:4] == b"\x89PNG"
    results = json.loads(out.read_text())
    for w in results["workloads"]:
        assert w["pyctcdecode"].startswith("no pyctcdecode environment")
        names = [r["decoder"] for r in w["rows"]]
        assert "rnnkit beam, all lines as one batch" in names
        assert all(r["seconds"] > 0 and 0 <= r["cer"] <= 1 for r in w["rows"])


def test_arpa_bigram_is_normalised(tmp_path):
    path = tmp_path / "w.arpa"
    load().write_arpa(path, ["a b a", "b b c", "a c"])
    text = path.read_text()
    uni, bi = {}, {}
    section = None
    for line in text.splitlines():
        if line.startswith("\\"):
            section = line
        elif line and section == "\\1-grams:":
            p, w, *bo = line.split("\t")
            uni[w] = (10 ** float(p), 10 ** float(bo[0]) if bo else 1.0)
        elif line and section == "\\2-grams:":
            p, words = line.split("\t")
            bi[tuple(words.split())] = 10 ** float(p)
    assert f"ngram 1={len(uni)}" in text and f"ngram 2={len(bi)}" in text
    assert math.isclose(sum(p for w, (p, _) in uni.items() if w != "<s>"), 1.0, rel_tol=1e-5)
    for v in ("<s>", "a", "b"):
        seen = {w for (u, w) in bi if u == v}
        total = sum(bi[v, w] for w in seen)
        total += uni[v][1] * sum(p for w, (p, _) in uni.items() if w not in seen and w != "<s>")
        assert math.isclose(total, 1.0, rel_tol=1e-4)
