"""The ner task: entity scores against seqeval, the fixed split, training through the command
line (with and without the CRF, and the binary form), predict's spans and eval's table."""

from __future__ import annotations

import json
import random

import pytest
from PIL import Image
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from rnnkit.cli import main
from rnnkit.tasks import ner
from rnnkit.tasks.ner_commands import aligned, spans, width
from rnnkit.tasks.ner_scores import EntityScores, per_type
from rnnkit.tasks.tagger import TaggerVocab

NAMES = [("Alice", "Smith"), ("Bob", "Jones"), ("Carol",), ("Dan", "Brown"), ("Eve",)]
PLACES = [("Paris",), ("New", "York"), ("Rome",), ("Oslo",), ("San", "Jose")]
FILLER = "the a met saw in at then and yesterday today quietly very".split()


def write_corpus(path, n: int = 240, seed: int = 0):
    """A CoNLL file whose entities follow from the words: persons and places in filler text."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        for _ in range(rng.randint(2, 4)):
            kind = rng.choice(("PER", "LOC", "O", "O"))
            if kind == "O":
                lines.append(f"{rng.choice(FILLER)}\tO")
                continue
            words = rng.choice(NAMES if kind == "PER" else PLACES)
            lines += [f"{w}\t{'B' if i == 0 else 'I'}-{kind}" for i, w in enumerate(words)]
        lines.append("")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train(tmp_path, name, *extra):
    data = tmp_path / "corpus.conll"
    if not data.exists():
        write_corpus(data)
    run = tmp_path / name
    code = main(["train", "ner", "--preset", "tiny", "--data", str(data), "--out", str(run),
                 "--train.progress", "false", "--train.max_steps", "60",
                 "--train.eval_every", "30", *extra])  # fmt: skip
    assert code == 0
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return run, records


def test_scores_equal_seqeval():
    rng = random.Random(1)
    tags = ["O", "O", "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG"]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 12))] for _ in range(200)]
    pred = [[t if rng.random() < 0.7 else rng.choice(tags) for t in g] for g in gold]
    scorer = EntityScores(TaggerVocab(["<pad>", "<unk>"], ["<pad>", "<unk>"], sorted(set(tags))))
    sums = scorer.sums([["w"] * len(g) for g in gold], gold, pred)
    m = scorer.metrics(sums)
    assert m["f1"] == pytest.approx(f1_score(gold, pred))
    assert m["precision"] == pytest.approx(precision_score(gold, pred))
    assert m["recall"] == pytest.approx(recall_score(gold, pred))
    report = classification_report(gold, pred, output_dict=True)
    table = per_type(sums)
    for kind in ("PER", "LOC", "ORG"):
        assert table[kind]["f1"] == pytest.approx(report[kind]["f1-score"])
        assert table[kind]["support"] == report[kind]["support"]
    right = sum(a == b for g, p in zip(gold, pred, strict=True) for a, b in zip(g, p, strict=True))
    assert m["token_accuracy"] == pytest.approx(right / sum(map(len, gold)))


def test_binary_scores_are_entities_of_runs_of_ones():
    scorer = EntityScores(
        TaggerVocab(["<pad>", "<unk>"], ["<pad>", "<unk>"], ["0", "1"]), (), "PER"
    )
    sums = scorer.sums([["w"] * 5], [["1", "1", "0", "1", "0"]], [["1", "1", "0", "0", "0"]])
    m = scorer.metrics(sums)
    assert (m["precision"], m["recall"], m["token_accuracy"]) == (1.0, 0.5, 0.8)


def test_split_is_fixed_by_sentence(tmp_path):
    cfg = ner.tiny()
    cfg.data.path = str(write_corpus(tmp_path / "c.conll", n=600, seed=3))
    splits = ner.sentences(cfg)
    assert all(ner.split_of(t) == "test" for t, _ in splits["test"])
    train = {" ".join(t) for t, _ in splits["train"]}
    assert train.isdisjoint(" ".join(t) for t, _ in splits["test"] + splits["val"])
    n = sum(map(len, splits.values()))
    assert 0.05 < len(splits["test"]) / n < 0.15 and 0.05 < len(splits["val"]) / n < 0.15


def test_train_without_and_with_crf_lowers_the_loss(tmp_path, capsys):
    for name, extra in (("soft", ()), ("crf", ("--model.crf", "true"))):
        run, records = train(tmp_path, name, *extra)
        losses = [r["loss"] for r in records if r["split"] == "train"]
        val = [r for r in records if r["split"] == "val"]
        assert losses[-1] < 0.5 * losses[0], (name, losses)
        assert val[-1]["loss"] < val[0]["loss"] and val[-1]["f1"] > 0.5, (name, val[-1])
    # predict prints the entities as bracketed spans, and the tags under the tokens
    assert main(["predict", str(run), "yesterday Alice Smith met Bob in New York"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert "[Alice Smith]PER" in out[-3] and "[New York]LOC" in out[-3]
    assert out[-2].split() == "yesterday Alice Smith met Bob in New York".split()
    assert out[-1].split()[1:3] == ["B-PER", "I-PER"]
    # eval prints and writes the per-type table: JSON and a bar chart
    assert main(["eval", str(run)]) == 0
    table = capsys.readouterr().out
    assert "PER" in table and "overall" in table
    result = json.loads((run / "ner_eval_test.json").read_text())
    assert result["crf"] is True and set(result["per_type"]) == {"LOC", "PER", "overall"}
    assert result["f1"] == result["per_type"]["overall"]["f1"] > 0.5
    with Image.open(run / "ner_eval_test.png") as image:
        assert image.size[0] > 300 and len(image.convert("L").getcolors(65536)) > 10


def test_binary_form_trains_two_tags(tmp_path, capsys):
    run, records = train(tmp_path, "bin", "--data.binary", "LOC", "--model.crf", "true")
    losses = [r["loss"] for r in records if r["split"] == "train"]
    assert losses[-1] < 0.5 * losses[0]
    assert main(["predict", str(run), "we met in New York"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert set(out[-1].split()) <= {"0", "1"}


def test_bad_options_are_one_line(tmp_path, capsys):
    data = write_corpus(tmp_path / "c.conll", n=50)
    bad = tmp_path / "bad.conll"
    bad.write_text("a\tO\nb\tPERSON\n")
    for path, option, expected in (
        (data, ["--data.binary", "XYZ"], "option 'data.binary': 'XYZ' is not an entity type"),
        (bad, [], "bad.conll:2: tag 'PERSON' is not in the bio scheme"),
        (data, ["--data.scheme", "none"], "option 'data.scheme' none"),
    ):
        argv = [
            "train",
            "ner",
            "--preset",
            "tiny",
            "--data",
            str(path),
            "--out",
            str(tmp_path / "r"),
        ]
        assert main([*argv, *option]) != 0
        err = capsys.readouterr().err.strip()
        assert expected in err and "\n" not in err, err
    assert not (tmp_path / "r" / "last.safetensors").exists()


def test_spans_and_aligned_in_display_cells():
    tokens = ["2005", "年", "、", "南アフリカ", "共和", "国", "で"]
    tags = ["B-DAT", "I-DAT", "O", "B-LOC", "I-LOC", "I-LOC", "O"]
    assert spans(tokens, tags) == "[2005 年]DAT 、 [南アフリカ 共和 国]LOC で"
    top, bottom = aligned(tokens, tags).splitlines()
    assert width("南アフリカ") == 10
    # each tag starts in the same display column as its token
    assert width(top[: top.index("南")]) == bottom.index("B-LOC")
