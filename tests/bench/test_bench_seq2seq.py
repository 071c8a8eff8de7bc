"""``rnnkit bench seq2seq``: its plain-PyTorch peer computes rnnkit's Seq2Seq (the same logits
on the same weights), and the command times the three rows and writes them."""

import json

import torch

from rnnkit.bench.seq2seq import PlainSeq2Seq
from rnnkit.cli import main
from rnnkit.data.pairs import make_batch
from rnnkit.seq2seq import Seq2Seq
from rnnkit.tasks.seq2seq_config import Seq2SeqConfig

NAMES = {  # PlainSeq2Seq's parameter prefix: rnnkit.Seq2Seq's
    "src_embedding.": "encoder.embedding.",
    "encoder.": "encoder.rnn.",
    "tgt_embedding.": "decoder.embedding.",
    "query.": "decoder.attention.query.",
    "keys.": "decoder.attention.memory.",
    "v.": "decoder.attention.v.",
    "cell.": "decoder.cells.0.",
    "bridge.": "decoder.bridge.0.",
    "combine.": "decoder.combine.",
    "head.": "decoder.head.",
}


def test_the_plain_model_computes_rnnkits_seq2seq():
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(embedding_size=6, hidden_size=8, encoder_layers=2, bidirectional=True)
    model = Seq2Seq(11, 9, cfg).double().eval()
    plain = PlainSeq2Seq(11, 9, 6, 8, 2, 0.0).double().eval()
    theirs = model.state_dict()
    weights = {}
    for name in plain.state_dict():
        prefix = next(p for p in NAMES if name.startswith(p))
        weights[name] = theirs[NAMES[prefix] + name.removeprefix(prefix)]
    plain.load_state_dict(weights)
    b = make_batch([[4, 5, 6, 7], [8, 9], [5, 5, 6]], [[4, 5], [6, 7, 8], [4]], range(3))
    want, _ = model(b.src, b.src_lengths, b.tgt_in)
    torch.testing.assert_close(plain(b.src, b.src_lengths, b.tgt_in), want)


def test_the_command_times_three_rows(tmp_path, capsys):
    out = tmp_path / "s2s.json"
    assert (
        main(["bench", "seq2seq", "--presets", "dates", "--repeats", "1", "--json", str(out)]) == 0
    )
    rows = json.loads(out.read_text())["presets"]["dates"]["cpu"]
    assert set(rows) == {"rnnkit kernel", "rnnkit step loop", "plain PyTorch"}
    assert all(r["seconds"] > 0 for r in rows.values()) and rows["plain PyTorch"]["vs_plain"] == 1
    assert "| dates (64, 20, 11) | rnnkit kernel |" in capsys.readouterr().out


def test_bad_presets_are_one_line(capsys):
    assert main(["bench", "seq2seq", "--presets", "chess"]) == 2
    assert "--presets takes some of g2p, translate, dates" in capsys.readouterr().err


def test_an_unwritable_json_is_refused_before_timing(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["bench", "seq2seq", "--presets", "dates", "--json", str(blocker / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "--json" in err and "not a directory" in err and "|" not in err
