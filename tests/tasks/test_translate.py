"""The translate task on a generated tab-separated file: reading columns and headers, the
fixed split, sacreBLEU as summable statistics, training (the loss goes down), eval by length."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.data.pairs import read_tsv
from rnnkit.errors import UserError
from rnnkit.tasks import translate
from rnnkit.tasks.seq2seq_task import Bleu, Example

EN = ["one", "two", "three", "four", "five", "six", "seven", "eight"]
ES = ["uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho"]


def write_pairs(path: Path, n: int = 600) -> Path:
    rng = random.Random(0)
    lines = ["id\ten\tes"]
    for i in range(n):
        idx = [rng.randrange(8) for _ in range(rng.randint(1, 6))]
        lines.append(f"{i}\t{' '.join(EN[j] for j in idx)} .\t{' '.join(ES[j] for j in idx)} .")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_read_tsv_columns_header_errors(tmp_path):
    path = write_pairs(tmp_path / "p.tsv", 5)
    pairs = read_tsv(path, -2, -1, header=True)
    assert len(pairs) == 5 and pairs[0][0].endswith(" .")
    assert read_tsv(path, 1, 2)[0] == ("en", "es")  # without header: the names are a pair
    (tmp_path / "bad.tsv").write_text("only one column\n")
    with pytest.raises(UserError, match="bad.tsv:1"):
        read_tsv(tmp_path / "bad.tsv", 0, 1)


def test_split_by_source_is_fixed(tmp_path):
    cfg = translate.tiny()
    cfg.data.path, cfg.data.header = str(write_pairs(tmp_path / "p.tsv", 2000)), True
    ex = translate.examples(cfg)
    assert {e.source for e in ex["train"]}.isdisjoint(e.source for e in ex["test"])
    assert all(translate.split_of(e.source) == "test" for e in ex["test"])


def test_bleu_from_summed_statistics_is_corpus_bleu():
    import sacrebleu

    hyps = ["el gato come .", "un perro", "la casa es roja ."]
    refs = ["el gato come pan .", "un perro grande", "la casa es roja ."]
    examples = [Example("", r) for r in refs]
    bleu = Bleu()
    parts = [bleu.sums(hyps[:1], examples[:1]), bleu.sums(hyps[1:], examples[1:])]
    total = {k: parts[0][k] + parts[1][k] for k in parts[0]}
    want = sacrebleu.corpus_bleu(hyps, [refs]).score
    assert bleu.metrics(total)["bleu"] == pytest.approx(want)


def test_needs_data(tmp_path, capsys):
    assert main(["train", "translate", "--out", str(tmp_path / "r")]) == 2
    assert "needs --data" in capsys.readouterr().err


def test_train_lowers_the_loss_then_eval(tmp_path):
    data = write_pairs(tmp_path / "p.tsv")
    run = tmp_path / "run"
    code = main(["train", "translate", "--preset", "tiny", "--data", str(data),
                 "--data.header", "true", "--out", str(run), "--train.progress", "false",
                 "--train.max_steps", "30", "--train.eval_every", "15"])  # fmt: skip
    assert code == 0
    records = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert train[-1] < 0.8 * train[0] and val[-1]["loss"] < val[0]["loss"]
    assert "bleu" in val[-1]
    assert main(["eval", str(run), "--limit", "20", "--beam", "2"]) == 0
    result = json.loads((run / "eval_test.json").read_text())
    assert result["decoding"]["method"] == "beam" and "bleu" in result


def test_word_outputs_are_detokenized():
    from rnnkit.data.pairs import TokenVocab

    text = "Y dijo Dios: ¿Sea la luz? (y fué) la luz."
    vocab = TokenVocab.from_texts([text], "word")
    assert vocab.encode(text)[:3] == [vocab.stoi["Y"], vocab.stoi["dijo"], vocab.stoi["Dios"]]
    assert vocab.decode(vocab.encode(text)) == text


@pytest.mark.parametrize("split", ["word", "char", "space"])
def test_decoded_unknowns_encode_back_to_unk(split):
    """A decoded output with <unk> in it (what `predict` prints and the attention map
    re-reads) encodes back to the same ids: one <unk> id, not "<", "unk", ">"."""
    from rnnkit.data.pairs import UNK, TokenVocab

    vocab = TokenVocab.from_texts(["la luz de Dios ."], split)
    ids = vocab.encode("la luz") + [UNK] + vocab.encode("de") + [UNK, UNK] + vocab.encode(".")
    assert vocab.encode(vocab.decode(ids)) == ids
    assert vocab.encode("xyz luz")[0] == UNK


@pytest.mark.parametrize("kind", ["directory", "fifo", "binary", "unreadable", "empty"])
def test_read_tsv_refuses_what_is_not_a_text_file_in_one_line(tmp_path, monkeypatch, kind):
    path = tmp_path / "pairs.tsv"
    expected = {
        "directory": "is a directory",
        "fifo": "is not a regular file",
        "binary": "binary file (NUL byte at offset 9000)",
        "unreadable": "cannot read: Permission denied",
        "empty": "is empty",
    }[kind]
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        if not hasattr(os, "mkfifo"):
            pytest.skip("no FIFOs here")
        os.mkfifo(path)
    elif kind == "binary":
        path.write_bytes(b"a\tb\n" * 2250 + b"\x00\x01\x02")
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        path.write_text("a\tb\n")

        def denied(*args, **kwargs):
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr("builtins.open", denied)
    with pytest.raises(UserError) as excinfo:
        read_tsv(path)
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message and expected in message


def test_read_tsv_refuses_mixed_column_counts_and_counts_empty_pairs(tmp_path, capsys):
    mixed = tmp_path / "mixed.tsv"
    mixed.write_text("1\tone\tuno\n2\ttwo\tdos\n3\tthree\n4\tfour\tcuatro\n")
    with pytest.raises(UserError) as excinfo:  # -2, -1 would pair "3" with "three"
        read_tsv(mixed, -2, -1)
    assert str(excinfo.value) == (
        f"{mixed}:3: 2 tab-separated column(s), but the first line has 3: every line needs "
        "the same columns"
    )
    holes = tmp_path / "holes.tsv"
    holes.write_text("one\tuno\n\n two \t\nthree\tthree\n\tcuatro\n")
    assert read_tsv(holes) == [("one", "uno"), ("three", "three")]
    err = capsys.readouterr().err
    assert err == (
        f"{holes}: left out 2 pair(s) with an empty source or target (the first on line 3)\n"
    )
    read_tsv(holes)
    assert capsys.readouterr().err == ""  # once
