"""The pos task: the Brown reader, the tag sets, the split by file, malformed files, and
training a little through the command line (the loss goes down), predict and eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from matplotlib.image import imread

from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.tasks import brown, pos

QUIET = ["--train.progress", "false"]
needs_brown = pytest.mark.skipif(not pos.BROWN.is_file(), reason="the Brown corpus is absent")


def losses(run: Path, split: str) -> list[float]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == split]


@pytest.mark.parametrize(
    "tag, base",
    [
        ("nn-tl", "nn"),  # title
        ("nn-hl", "nn"),  # headline
        ("nn-tl-hl", "nn"),  # both
        ("nn-nc", "nn"),  # cited word
        ("np$", "np$"),  # the possessive stays
        ("fw-nn", "nn"),  # foreign word
        ("fw-*", "*"),
        ("ppss+md", "ppss"),  # I'd: the first part of a contraction
        ("pps+bez", "pps"),  # it's
        ("fw-in+at-tl", "in"),
        ("fw-in+at-t", "in"),  # the corpus's truncated suffixes
        ("ppss+ber-n", "ppss"),
        ("do*", "do*"),  # the negated form stays
        ("---hl", "--"),  # a dash in a headline
        ("--", "--"),
        ("NN-TL", "nn"),  # upper case as other distributions write it
    ],
)
def test_base_tags(tag, base):
    assert brown.base_tag(tag) == base
    assert brown.map_tag(tag, "base") == base
    assert brown.map_tag(tag, "full") == tag.lower()


@pytest.mark.parametrize(
    "tag, universal",
    [
        ("at", "DET"),
        ("nn-tl", "NOUN"),
        ("np$", "NOUN"),
        ("fw-nn", "X"),
        ("*", "ADV"),
        ("do*", "VERB"),
        ("bedz*", "VERB"),
        ("cs", "ADP"),
        ("to", "PRT"),
        ("pps+bez", "PRON"),
        ("md", "VERB"),
        ("cd", "NUM"),
        ("``", "."),
        ("---hl", "."),
        ("jj$-tl", "ADJ"),
        ("cc", "CONJ"),
        ("abn", "PRT"),  # as en-brown.map has it
    ],
)
def test_universal_tags(tag, universal):
    assert brown.universal_tag(tag) == universal


def test_unmappable_tag_is_one_line(tmp_path):
    f = tmp_path / "c1"
    f.write_text("Hello/zz world/nn\n")
    with pytest.raises(UserError, match=r"c1:1: tag 'zz'"):
        brown.read_corpus(f, "universal")
    assert brown.read_corpus(f, "full")["files"] == {"train": [], "val": [], "test": []}


@pytest.fixture(scope="module")
def full():
    return brown.read_corpus(pos.BROWN, "full")


@needs_brown
def test_every_brown_tag_maps_to_one_of_the_12(full):
    tags = {t for split in ("train", "val", "test") for _, ts in full[split] for t in ts}
    assert len(tags) == 472  # as the data README says
    assert {brown.universal_tag(t) for t in tags} == set(brown.UNIVERSAL_TAGS)
    assert len({brown.base_tag(t) for t in tags}) == 104


@needs_brown
def test_the_split_is_fixed_and_disjoint_by_file(full):
    corpus = full
    files = corpus["files"]
    assert [len(files[s]) for s in ("train", "val", "test")] == [398, 47, 55]
    assert set(files["train"]).isdisjoint(files["val"])
    assert set(files["train"]).isdisjoint(files["test"])
    assert set(files["val"]).isdisjoint(files["test"])
    assert len(files["train"]) + len(files["val"]) + len(files["test"]) == 500
    assert [len(corpus[s]) for s in ("train", "val", "test")] == [45154, 5620, 6566]
    assert files["test"][:3] == ["ca01", "ca05", "ca13"]  # fixed by the hash, not by order
    assert all(brown.split_of(f) == "test" for f in files["test"])


def name(i: int) -> str:
    return f"c{chr(97 + i % 26)}{i:02d}"


def write_corpus(root: Path, n_files: int = 30) -> Path:
    root.mkdir()
    for i in range(n_files):
        (root / name(i)).write_text(
            f"\n\n\tThe/at file{i}/np is/bez here/rb ./.\n\n\tIt/pps ran/vbd ./.\n"
        )
    (root / "README").write_text("not a corpus file\n")
    return root


def test_a_directory_splits_by_file(tmp_path):
    root = write_corpus(tmp_path / "corpus")
    corpus = brown.read_corpus(root, "base")
    for split in ("train", "val", "test"):
        for tokens, _ in corpus[split]:
            if tokens[0] == "The":  # each file's first sentence names it: "file7"
                assert brown.split_of(name(int(tokens[1][4:]))) == split
    assert sum(len(corpus[s]) for s in ("train", "val", "test")) == 60
    assert brown.read_corpus(root, "base") == corpus  # fixed


def test_malformed_file_is_one_line_naming_file_and_line(tmp_path):
    root = write_corpus(tmp_path / "corpus", 3)
    bad = root / "ca01"
    bad.write_text("The/at dog/nn ./.\n\nA/at word without tag/nn\n")
    with pytest.raises(UserError) as e:
        brown.read_corpus(root, "base")
    message = str(e.value)
    assert "\n" not in message and f"{bad}:3: token 'word' has no tag" in message
    with pytest.raises(UserError, match="no such file"):
        brown.read_corpus(tmp_path / "missing", "base")
    with pytest.raises(UserError, match="no files named like"):
        brown.read_corpus(tmp_path / "corpus", "base", files="x.*")


def test_bad_options_are_one_line(capsys):
    assert main(["train", "pos", "--preset", "tiny", "--model.hidden_size", "0"]) != 0
    assert "model.hidden_size" in capsys.readouterr().err
    assert main(["train", "pos", "--preset", "tiny", "--data.files", "("]) != 0
    assert "option 'data.files' is not a regular expression" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pos") / "run"
    assert main(["train", "pos", "--preset", "tiny", "--out", str(out), *QUIET]) == 0
    return out


@needs_brown
def test_training_lowers_the_loss(run):
    train, val = losses(run, "train"), losses(run, "val")
    assert train[-1] < 0.8 * train[0]
    assert val[-1] < val[0]


@needs_brown
def test_predict_prints_tags_aligned_under_the_words(run, capsys):
    assert main(["predict", str(run), "The old man the boats ."]) == 0
    lines = capsys.readouterr().out.splitlines()
    words, tags = lines[0], lines[1]
    assert words.split() == ["The", "old", "man", "the", "boats", "."]
    assert len(tags.split()) == 6
    starts = [i for i, c in enumerate(words) if c != " " and (i == 0 or words[i - 1] == " ")]
    tag_starts = [i for i, c in enumerate(tags) if c != " " and (i == 0 or tags[i - 1] == " ")]
    assert starts == tag_starts  # each tag starts under its word


@needs_brown
def test_eval_prints_accuracy_beside_the_baseline_and_draws_the_confusion(run, capsys):
    assert main(["eval", str(run), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "most-frequent-tag baseline" in out and "unseen words" in out
    result = json.loads((run / "eval_val.json").read_text())
    assert 0 <= result["accuracy"] <= 1 and 0.5 < result["baseline_accuracy"] < 1
    matrix = result["confusion"]["matrix"]
    assert sum(map(sum, matrix)) == result["tokens"]
    image = imread(run / "eval_val.png")
    assert image.ndim == 3 and image[..., :3].std() > 0.05


def test_conll_files_are_read_by_column(tmp_path):
    f = tmp_path / "pos.conll"
    sentences = [f"The\tDT\tB-NP\nword{i}\tNN\tI-NP\nran\tVBD\tO\n" for i in range(40)]
    f.write_text("\n".join(sentences))
    cfg = pos.tiny()
    cfg.data.path, cfg.data.format, cfg.data.column = str(f), "conll", 1
    splits = pos.sentences(cfg)
    assert sum(len(splits[s]) for s in ("train", "val", "test")) == 40
    assert all(tags == ["DT", "NN", "VBD"] for s in ("train", "val") for _, tags in splits[s])
    cfg.data.column = 3
    with pytest.raises(UserError, match=r"pos.conll:1: 3 column\(s\)"):
        pos.sentences(cfg)


@needs_brown
def test_eval_scores_a_base_run_in_universal_tags(run, capsys):
    assert main(["eval", str(run), "--split", "val", "--tagset", "universal"]) == 0
    result = json.loads((run / "eval_val_universal.json").read_text())
    assert set(result["confusion"]["labels"]) <= set(brown.UNIVERSAL_TAGS)
    assert result["tagset"] == "universal" and 0 <= result["accuracy"] <= 1
    capsys.readouterr()
    assert main(["eval", str(run), "--tagset", "full"]) != 0  # base tags cannot become full
    assert "map only to: universal" in capsys.readouterr().err
