"""The g2p task on a generated dictionary in CMUdict's format (variants, comments, stress):
parsing, the fixed split by word, PER and WER with variants, training (the loss goes down)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.tasks import g2p
from rnnkit.tasks.seq2seq_commands import with_all_references
from rnnkit.tasks.seq2seq_task import ErrorRates, Example, edit_distance

PHONE = {"a": "AE1", "b": "B", "d": "D", "e": "IY0", "k": "K", "o": "OW2", "t": "T"}


def write_dict(path: Path, n: int = 600) -> Path:
    lines = [";;; a comment line", "ab AE1 B # a trailing comment", "ab(2) EY1 B"]
    words = ("".join(w) for k in (3, 4, 5) for w in itertools.product("abdekot", repeat=k))
    for word in itertools.islice(words, n):
        lines.append(f"{word} " + " ".join(PHONE[c] for c in word))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_read_cmudict_variants_comments_stress(tmp_path):
    prons = g2p.read_cmudict(write_dict(tmp_path / "d.dict", 5))
    assert prons["ab"] == ["AE B", "EY B"]
    assert ";;;" not in " ".join(prons) and all("1" not in p for ps in prons.values() for p in ps)
    (tmp_path / "bad.dict").write_text("word\n")
    with pytest.raises(UserError, match="bad.dict:1"):
        g2p.read_cmudict(tmp_path / "bad.dict")
    with pytest.raises(UserError, match="missing.dict: no such file"):
        g2p.read_cmudict(tmp_path / "missing.dict")


def test_split_is_fixed_by_word(tmp_path):
    cfg = g2p.tiny()
    cfg.data.path = str(write_dict(tmp_path / "d.dict"))
    ex = g2p.examples(cfg)
    train_words = {e.source for e in ex["train"]}
    assert train_words.isdisjoint(e.source for e in ex["test"] + ex["val"])
    assert 0.05 < len(ex["test"]) / (len(train_words) + len(ex["test"]) + len(ex["val"])) < 0.15
    assert all(g2p.split_of(e.source) == "test" for e in ex["test"])


def test_error_rates_with_variants():
    examples = [Example("ab", "AE B", ("AE B", "EY B")), Example("tod", "T OW D")]
    sums = ErrorRates().sums(["EY B", "T D"], examples)
    m = ErrorRates().metrics(sums)
    assert m["wer"] == 0.5  # the variant counts as right; "T D" misses one phoneme
    assert m["per"] == pytest.approx(1 / 5)
    assert edit_distance(list("kitten"), list("sitting")) == 3


def test_training_pairs_scored_with_every_target_of_their_source():
    """`rnnkit eval --split train` scores each training source once, any of its targets right."""
    pairs = [Example("ab", "AE B"), Example("tod", "T OW D"), Example("ab", "EY B")]
    merged = with_all_references(pairs)
    ab, tod = Example("ab", "AE B", ("AE B", "EY B")), Example("tod", "T OW D", ("T OW D",))
    assert merged == [ab, tod]
    assert ErrorRates().metrics(ErrorRates().sums(["EY B", "T OW D"], merged))["wer"] == 0


def test_train_lowers_the_loss_then_eval(tmp_path, capsys):
    data = write_dict(tmp_path / "d.dict")
    run = tmp_path / "run"
    code = main(["train", "g2p", "--preset", "tiny", "--data", str(data), "--out", str(run),
                 "--train.progress", "false", "--train.max_steps", "30",
                 "--train.eval_every", "15"])  # fmt: skip
    assert code == 0
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert train[-1] < 0.8 * train[0] and val[-1]["loss"] < val[0]["loss"]
    assert {"per", "wer"} <= set(val[-1])
    assert main(["eval", str(run), "--limit", "16"]) == 0
    assert "per" in json.loads((run / "eval_test.json").read_text())
    assert main(["eval", str(run), "--split", "train", "--limit", "16"]) == 0
    assert json.loads((run / "eval_train.json").read_text())["examples"] == 16
    assert main(["predict", str(run), "abet"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("abet\t")


def test_label_smoothing_applies_to_training_only(tmp_path):
    """With model.label_smoothing the training loss is the smoothed one (larger for a
    confident model), and the validation loss (the model in eval mode) stays the plain one."""
    cfg = g2p.tiny()
    cfg.data.path = str(write_dict(tmp_path / "d.dict"))
    cfg.model.dropout = 0.0
    task = g2p.SPEC.build(cfg)
    task.start_epoch(0)
    batch = task.train_batch(0)
    model = task.model
    plain = task.loss(model.eval(), batch)[0]
    cfg.model.label_smoothing = 0.3
    assert task.loss(model.eval(), batch)[0] == plain
    smoothed = task.loss(model.train(), batch)[0]
    assert smoothed != plain


def test_eval_and_predict_with_an_ensemble(tmp_path, capsys):
    """`--ensemble RUN ...` decodes with several runs at once; a run over another vocabulary
    and an attention map of an ensemble are one-line errors."""
    data = write_dict(tmp_path / "d.dict")
    runs = []
    for seed, path in [(1, data), (2, data), (3, write_dict(tmp_path / "small.dict", 30))]:
        runs.append(tmp_path / f"run{seed}")
        assert main(["train", "g2p", "--preset", "tiny", "--data", str(path), "--out",
                     str(runs[-1]), "--train.progress", "false", "--train.max_steps", "10",
                     "--train.seed", str(seed)]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["eval", str(runs[0]), "--limit", "16", "--ensemble", str(runs[1])]) == 0
    result = json.loads((runs[0] / "eval_test_ensemble2.json").read_text())
    assert result["ensemble"][1] == str(runs[1]) and result["examples"] == 16
    assert main(["predict", str(runs[0]), "abet", "--beam", "3", "--ensemble", str(runs[1])]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("abet\t")
    assert main(["eval", str(runs[0]), "--ensemble", str(runs[2])]) == 2
    assert "its vocabulary differs" in capsys.readouterr().err
    argv = ["predict", str(runs[0]), "abet", "--attention", "a.png", "--ensemble", str(runs[1])]
    assert main(argv) == 2
    assert "--attention draws one model's weights" in capsys.readouterr().err
