"""rnnkit train sentiment: the readers (the sign rule, zeros dropped, malformed lines), the fixed
split, every pooling (attention weights sum to 1 over the real words), init_from, and a tiny run
through the command line with predict (--attention) and eval (the confusion matrix)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from PIL import Image

from rnnkit.cli import main
from rnnkit.config import apply_overrides
from rnnkit.errors import UserError
from rnnkit.tasks import sentiment
from rnnkit.tasks import text_classify_data as td
from rnnkit.tasks.text_classify_model import POOLS, TextClassifier, TextClassifierConfig
from user_errors import one_line_error

QUIET = ["--train.progress", "false"]
GOOD = "good great charming wonderful moving superb fine".split()
BAD = "bad dull awful boring tedious weak lame".split()
FILLER = "the film a story this movie is was and of its plot acting cast it".split()


def write_toy(path: Path, n: int = 600, seed: int = 0) -> Path:
    """``text<TAB>label`` sentences whose label is told by one word of GOOD or BAD."""
    rng = random.Random(seed)
    lines = []
    for i in range(n):
        label = rng.choice(["pos", "neg"])
        words = rng.choices(FILLER, k=rng.randint(3, 12))
        words.insert(rng.randrange(len(words) + 1), rng.choice(GOOD if label == "pos" else BAD))
        lines.append(f"{' '.join(words)} {i}\t{label}\n")  # the number: no two texts alike
    path.write_text("".join(lines), encoding="utf-8")
    return path


# ---- readers --------------------------------------------------------------------------------
def test_the_real_snippets_read_with_the_sign_rule():
    examples = td.read_examples(sentiment.SNIPPETS)
    assert len(examples) == 10_605 - 37  # the 37 sentences rated exactly 0 are dropped
    counts = {label: sum(e.label == label for e in examples) for label in ("positive", "negative")}
    assert counts == {"positive": 5242, "negative": 5326}
    assert examples[0].line == 2 and examples[0].text.startswith("The Rock is destined")


def test_the_sign_rule_and_zeros_dropped(tmp_path):
    f = tmp_path / "s.tsv"
    f.write_text("id\trating\tsentence\n1\t2.5\tnice\n2\t-0.1\tmeh\n3\t0\tflat\n4\t0.0\tzero\n")
    examples = td.read_examples(f)
    assert [(e.text, e.label, e.line) for e in examples] == [
        ("nice", "positive", 2),
        ("meh", "negative", 3),
    ]
    assert td.detect_format(f) == "snippets"
    f.write_text("id\trating\tsentence\n1\t2.5\tnice\n2\tabc\tbad rating\n")
    one_line_error(lambda: td.read_examples(f), "s.tsv:3:", "'abc'", "not a finite number")
    f.write_text("id\trating\tsentence\n1\t2.5\n")
    one_line_error(lambda: td.read_examples(f), "s.tsv:2:", "3 tab-separated fields")


def test_tsv_labels_of_any_kind_and_the_class_order(tmp_path):
    f = tmp_path / "t.tsv"
    f.write_text("text\tlabel\none\t10\ntwo\t-1\n\nthree\t2\nfour\twith\ttabs\t2\n")
    examples = td.read_examples(f)
    assert [e.label for e in examples] == ["10", "-1", "2", "2"]
    assert examples[3].text == "four\twith\ttabs"  # the label follows the last tab
    assert td.sort_labels([e.label for e in examples]) == ["-1", "2", "10"]  # numerically
    assert td.sort_labels(["pos", "neg", "10"]) == ["10", "neg", "pos"]  # else as strings


def test_malformed_tsv_lines_are_one_line_naming_file_and_line(tmp_path):
    f = tmp_path / "bad.tsv"
    f.write_text("fine\tpos\nno tab here\n")
    one_line_error(lambda: td.read_examples(f), "bad.tsv:2:", "no tab")
    f.write_text("fine\tpos\nmissing label\t  \n")
    one_line_error(lambda: td.read_examples(f), "bad.tsv:2:", "label", "missing")
    f.write_text("\tpos\n")
    one_line_error(lambda: td.read_examples(f), "bad.tsv:1:", "text", "empty")
    f.write_text("")
    one_line_error(lambda: td.read_examples(f), "bad.tsv", "no examples", "empty file")
    one_line_error(lambda: td.read_examples(tmp_path / "none.tsv"), "not found", "none.tsv")
    f.write_bytes(b"caf\xe9\tpos\n")
    one_line_error(lambda: td.read_examples(f), "bad.tsv", "not UTF-8")


# ---- the split ------------------------------------------------------------------------------
def test_the_split_is_fixed_disjoint_and_80_10_10():
    examples = td.read_examples(sentiment.SNIPPETS)
    splits = td.split_examples(examples)
    shuffled = list(examples)
    random.Random(1).shuffle(shuffled)
    again = td.split_examples(shuffled)  # the file's order does not matter
    texts = {s: {e.text for e in exs} for s, exs in splits.items()}
    assert all(texts[s] == {e.text for e in again[s]} for s in td.SPLITS)
    assert not texts["train"] & texts["val"] and not texts["train"] & texts["test"]
    assert not texts["val"] & texts["test"]
    sizes = {s: len(exs) / len(examples) for s, exs in splits.items()}
    assert sizes["train"] == pytest.approx(0.8, abs=0.02), sizes
    assert sizes["val"] == pytest.approx(0.1, abs=0.015) and sizes["test"] == pytest.approx(
        0.1, abs=0.015
    )
    assert td.split_of("A  fine   film") == td.split_of("A fine film")  # white space normalised


# ---- the model ------------------------------------------------------------------------------
def toy_vocab() -> td.TextVocab:
    exs = [td.Example(" ".join(GOOD + BAD + FILLER), "pos", 1), td.Example("x", "neg", 2)]
    return td.TextVocab.build(exs, 100, 1, True)


@pytest.mark.parametrize("level", ["word", "char", "both"])
def test_every_pooling_runs_and_padding_changes_nothing(level):
    vocab = toy_vocab()
    texts = ["a good film", "the movie was dull and its plot weak", "fine"]
    batch = td.make_batch(vocab, texts, ["pos", "neg", "pos"], [0, 1, 2], chars=level != "word")
    assert batch.lengths.tolist() == [3, 8, 1] and batch.words.shape == (8, 3)
    for pool in POOLS:
        cfg = TextClassifierConfig(level=level, pool=pool, embedding_size=8, hidden_size=6)
        cfg.char_embedding_size, cfg.char_hidden_size, cfg.attention_size, cfg.dropout = (
            4,
            3,
            5,
            0.0,
        )
        model = TextClassifier(len(vocab), len(vocab.chars), 2, cfg).eval()
        logits, alpha = model(batch)
        assert logits.shape == (3, 2)
        for b, text in enumerate(texts):  # each sentence alone: no padding at all
            alone = td.make_batch(vocab, [text], [None], [0], chars=level != "word")
            torch.testing.assert_close(model(alone)[0][0], logits[b], rtol=1e-5, atol=1e-6)
        if pool != "attention":
            assert alpha is None
            continue
        assert alpha.shape == (8, 3)
        torch.testing.assert_close(alpha.sum(0), torch.ones(3))
        assert (alpha[~batch.mask] == 0).all() and (alpha[batch.mask] > 0).all()


def test_word_dropout_reads_words_as_unk_in_training_only():
    vocab = toy_vocab()
    texts = [" ".join(random.Random(i).choices(GOOD + BAD + FILLER, k=20 + i)) for i in range(50)]
    batch = td.make_batch(vocab, texts, ["pos"] * 50, range(50), chars=False)
    cfg = TextClassifierConfig(embedding_size=8, hidden_size=4, dropout=0.0, word_dropout=0.6)
    model = TextClassifier(len(vocab), len(vocab.chars), 2, cfg)
    unk = model.embedding.weight[1]
    is_unk = (model.token_vectors(batch) == unk).all(-1)  # (T, B)
    assert 0.55 < float(is_unk[batch.mask].float().mean()) < 0.65
    assert not is_unk[~batch.mask].any()  # padding stays padding
    model.eval()
    assert not (model.token_vectors(batch) == unk).all(-1).any()


def test_the_rating_head_learns_the_rating_and_needs_ratings(tmp_path):
    """--model.rating_weight: the snippets' ratings reach the batch, the auxiliary loss trains a
    second head to regress r/4, and data without ratings is refused in one line."""
    f = tmp_path / "s.tsv"
    rng = random.Random(0)
    rows = ["id\trating\tsentence"]
    for i in range(400):  # the rating is told by how many GOOD / BAD words the text has
        k = rng.randint(-3, 3)
        words = rng.choices(GOOD if k > 0 else BAD, k=abs(k)) + rng.choices(FILLER, k=4)
        rng.shuffle(words)
        rows.append(f"{i}\t{k or 0.5}\t{' '.join(words)} {i}")
    f.write_text("\n".join(rows) + "\n")
    assert [e.rating for e in td.read_examples(f)[:3]] == [
        float(r.split("\t")[1]) for r in rows[1:4]
    ]
    cfg = sentiment.tiny()
    cfg.data.path, cfg.model.rating_weight, cfg.model.pool = str(f), 1.0, "mean"
    task = sentiment.build(cfg)
    batch = task.batch_of("train", list(range(64)))
    assert torch.equal(batch.ratings, torch.tensor([e.rating for e in task.splits["train"][:64]]))
    model = task.model
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)

    def rating_error() -> float:
        model.eval()
        with torch.no_grad():
            _, _, r = model(batch, with_rating=True)
        model.train()
        return float((r - batch.ratings / 4).pow(2).mean())

    before = rating_error()
    for _ in range(60):
        loss, n = task.loss(model, task.batch_of("train", list(range(64))))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert n == 64 and rating_error() < 0.3 * before, (before, rating_error())
    toy = write_toy(tmp_path / "toy.tsv", n=100)
    cfg.data.path = str(toy)
    one_line_error(lambda: sentiment.build(cfg), "model.rating_weight", "toy.tsv", "no")


def test_option_errors_are_one_line(tmp_path):
    spec = sentiment.SPEC
    for bad, words in (
        ({"model.pool": "median"}, ["model.pool"]),
        ({"model.hidden_size": 0}, ["model.hidden_size"]),
        ({"model.dropout": 1.0}, ["model.dropout"]),
        ({"model.rating_weight": -1.0}, ["model.rating_weight"]),
        ({"model.ngrams": 9}, ["model.ngrams"]),
        ({"model.level": "char", "model.init_from": str(tmp_path)}, ["model.init_from", "word"]),
        ({"model.init_from": str(tmp_path / "nowhere")}, ["model.init_from", "does not exist"]),
    ):
        with pytest.raises(UserError) as e:
            spec.check(apply_overrides(spec.presets["tiny"](), bad))
        assert "\n" not in str(e.value) and all(w in str(e.value) for w in words), str(e.value)


# ---- a trained run: train, predict, eval ------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("sentiment")
    data = write_toy(base / "toy.tsv")
    out = base / "run"
    args = ["--data.path", str(data), "--model.pool", "attention", "--train.max_steps", "40"]
    assert main(["train", "sentiment", "--preset", "tiny", "--out", str(out), *args, *QUIET]) == 0
    return out


def test_training_through_the_command_line_lowers_the_loss(run):
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert sum(train[-2:]) / 2 < 0.6 * sum(train[:2]) / 2, train
    assert val[-1]["accuracy"] > 0.8, val


def test_predict_and_the_attention_picture(run, tmp_path, capsys):
    png = tmp_path / "words.png"
    texts = ["a wonderful story", "the plot was tedious and the acting lame"]
    assert main(["predict", str(run), *texts, "--attention", str(png)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("a wonderful story\tpos (p = ")
    assert lines[2].startswith("the plot was tedious and the acting lame\tneg (p = ")
    for i in (1, 2):
        picture = tmp_path / f"words_{i}.png"
        assert lines[2 * i - 1] == str(picture)
        with Image.open(picture) as image:
            greys = image.convert("L").getcolors(maxcolors=256) or []
            assert image.format == "PNG" and len(greys) > 10


def test_eval_writes_the_scores_and_the_confusion_matrix(run, capsys):
    assert main(["eval", str(run), "--split", "val"]) == 0
    out = capsys.readouterr().out
    assert "sentiment val:" in out and "majority class" in out
    result = json.loads((run / "eval_val.json").read_text())
    matrix = torch.tensor(result["confusion"])
    assert result["classes"] == ["neg", "pos"] and int(matrix.sum()) == result["examples"]
    assert result["accuracy"] == pytest.approx(float(matrix.trace()) / result["examples"])
    with Image.open(run / "eval_val.png") as image:
        assert image.format == "PNG" and min(image.size) > 200


def test_run_command_errors_are_one_line(run, tmp_path, capsys):
    plain = tmp_path / "plain"
    args = ["--data.path", str(write_toy(tmp_path / "t.tsv", 200)), "--train.max_steps", "2"]
    assert main(["train", "sentiment", "--preset", "tiny", "--out", str(plain), *args, *QUIET]) == 0
    capsys.readouterr()
    assert main(["predict", str(plain), "fine", "--attention", str(tmp_path / "w.png")]) == 2
    assert "pools with 'max'" in capsys.readouterr().err
    assert main(["eval", str(run), "--out", str(tmp_path / "c.png")]) == 2
    assert "JSON" in capsys.readouterr().err
    assert main(["predict", str(run), "fine", "  "]) == 2  # nothing to classify: no guess
    assert "text 2 is empty" in capsys.readouterr().err


# ---- init_from: a word language model's weights ---------------------------------------------
def test_init_from_copies_the_embedding_by_word_and_the_forward_encoder(tmp_path):
    from rnnkit.tasks.runs import load_run
    from rnnkit.tasks.text_classify_model import init_from_lm

    corpus = tmp_path / "lm.txt"
    rng = random.Random(0)
    corpus.write_text(
        "".join(" ".join(rng.choices(GOOD + BAD + FILLER, k=10)) + "\n" for _ in range(300))
        + "The Film\n"
    )
    lm_run = tmp_path / "lm"
    lm_args = ["--data.path", str(corpus), "--train.max_steps", "3", *QUIET]
    assert main(["train", "wordlm", "--preset", "tiny", "--out", str(lm_run), *lm_args]) == 0
    lm = load_run(lm_run)

    vocab = td.TextVocab.build([td.Example("the film good unseenword", "p", 1)], 100, 1, True)
    cfg = TextClassifierConfig(embedding_size=16, hidden_size=16, num_layers=1)
    model = TextClassifier(len(vocab), len(vocab.chars), 2, cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = init_from_lm(model, vocab.words, str(lm_run))
    emb, source = model.embedding.weight, lm.model.embedding.weight
    for word in ("the", "good"):
        torch.testing.assert_close(emb[vocab.word_ids[word]], source[lm.vocab.stoi[word]])
    # "film" is in the LM in lower case; "unseenword" is not there at all
    torch.testing.assert_close(emb[vocab.word_ids["film"]], source[lm.vocab.stoi["film"]])
    unseen = vocab.word_ids["unseenword"]
    torch.testing.assert_close(emb[unseen], before["embedding.weight"][unseen])
    torch.testing.assert_close(emb[1], source[lm.vocab.stoi["<unk>"]])  # <unk>
    torch.testing.assert_close(emb[0], before["embedding.weight"][0])  # <pad>
    for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
        torch.testing.assert_close(getattr(model.rnn, name), getattr(lm.model.rnn, name))
        reverse = f"rnn.{name}_reverse"
        torch.testing.assert_close(model.state_dict()[reverse], before[reverse])  # untouched
    assert report["words_mapped"] == 4 and "rnn.weight_hh_l0" in report["copied"]
    wrong = TextClassifier(len(vocab), len(vocab.chars), 2, TextClassifierConfig(hidden_size=8))
    one_line_error(lambda: init_from_lm(wrong, vocab.words, str(lm_run)), "hidden_size 16")
    gru = TextClassifierConfig(cell="gru", embedding_size=16, hidden_size=16)
    model = TextClassifier(len(vocab), len(vocab.chars), 2, gru)
    one_line_error(lambda: init_from_lm(model, vocab.words, str(lm_run)), "model.cell")


def test_the_report_reads_the_runs_figures(run, tmp_path, capsys):
    from rnnkit.tasks.sentiment_report import main as report

    png, out = tmp_path / "curves.png", tmp_path / "r.json"
    assert report([f"toy={run}", "--json", str(out), "--png", str(png)]) == 0
    result = json.loads(out.read_text())["toy"]
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    val = [r["accuracy"] for r in records if r["split"] == "val"]
    assert result["best_val_accuracy"] == max(val) and result["steps"] == 40
    assert "| toy | " in capsys.readouterr().out
    with Image.open(png) as image:
        assert image.format == "PNG"


# ---- --model.ngrams: the naive-Bayes n-gram classifier mixed in ---------------------------------
def test_ngrams_are_counted_by_sentence_and_read_as_binary_features():
    assert td.ngrams_of(["a", "b", "c"], 2) == ["a", "b", "c", "a b", "b c"]
    exs = [td.Example("good good film", "pos", 1), td.Example("good film", "pos", 2),
           td.Example("bad film", "neg", 3)]  # fmt: skip
    vocab = td.TextVocab.build(exs, 100, 1, True, ngram_order=2)
    assert vocab.ngrams == ["film", "good", "good film"]  # in >= 2 sentences ("good good": 1)
    tokens = ["good", "film", "good", "film", "unknown"]
    assert vocab.ngram_ids_of(tokens) == [0, 1, 2]  # each once, sorted, unknown ones dropped
    assert td.TextVocab.from_dict(vocab.to_dict()) == vocab
    batch = td.make_batch(vocab, ["good film", "bad", "film"], ["pos", "neg", "pos"], range(3))
    assert batch.ngrams.tolist() == [0, 1, 2, 0] and batch.ngram_offsets.tolist() == [0, 3, 3]


def test_the_ngram_classifier_is_nb_logistic_regression_and_the_mixture_is_exact(tmp_path):
    """Its logits equal scikit-learn's decision function on x ∘ r, with r the log-count ratio
    computed here by hand; the mixture is log((1 - w) p_net + w p_ngram) for every w."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from rnnkit.tasks import text_classify_ngrams as ng

    exs = td.read_examples(write_toy(tmp_path / "toy.tsv", n=300))
    vocab = td.TextVocab.build(exs, 1000, 1, True, ngram_order=2)
    x = ng.ngram_matrix(vocab, exs).toarray()
    y = np.array([vocab.class_ids[e.label] for e in exs])
    p, q = 1 + x[y == 1].sum(0), 1 + x[y == 0].sum(0)
    r = np.log(p / p.sum()) - np.log(q / q.sum())
    np.testing.assert_allclose(ng.log_count_ratio(ng.ngram_matrix(vocab, exs), y), r)
    reference = LogisticRegression(C=1.0, max_iter=2000).fit(x * r, y).decision_function(x * r)
    weight, bias = ng.fit_ngram_classifier(vocab, exs)
    cfg = TextClassifierConfig(embedding_size=8, hidden_size=8, ngrams=2)
    model = TextClassifier(len(vocab), len(vocab.chars), 2, cfg, len(vocab.ngrams)).eval()
    model.ngram_weight.copy_(weight)
    model.ngram_bias.copy_(bias)
    batch = td.make_batch(vocab, [e.text for e in exs], [e.label for e in exs], range(len(exs)))
    logits = model.ngram_logits(batch)
    np.testing.assert_allclose((logits[:, 1] - logits[:, 0]).numpy(), reference, atol=1e-4)
    net, grams = torch.randn(5, 2), torch.randn(5, 2)
    for w in (0.0, 0.3, 1.0):
        model.ngram_mix.fill_(w)
        expected = ((1 - w) * net.softmax(-1) + w * grams.softmax(-1)).log()
        torch.testing.assert_close(model.mixed(net, grams), expected)


def test_a_run_with_ngrams_writes_the_mixture_into_its_best_checkpoint(tmp_path, capsys):
    from rnnkit.train.checkpoint import load_checkpoint

    data = write_toy(tmp_path / "toy.tsv")
    out = tmp_path / "run"
    args = ["--data.path", str(data), "--model.ngrams", "2", "--train.max_steps", "4", *QUIET]
    assert main(["train", "sentiment", "--preset", "tiny", "--out", str(out), *args]) == 0
    said = capsys.readouterr().out
    assert "n-grams: a naive-Bayes logistic regression over" in said
    best = load_checkpoint(out / "best.safetensors")
    report = best.meta["ngram_classifier"]
    # one word tells the label: the n-grams alone get it right, and the mixture at least as well
    assert (
        report["accuracy_ngrams"] > 0.95 and report["accuracy_mixed"] >= report["accuracy_network"]
    )
    assert float(best.model_state["ngram_mix"]) == report["mix"] > 0
    assert float(load_checkpoint(out / "last.safetensors").model_state["ngram_mix"]) == 0
    assert main(["eval", str(out), "--split", "val"]) == 0
    evaluated = json.loads((out / "eval_val.json").read_text())
    assert evaluated["accuracy"] == pytest.approx(report["accuracy_mixed"])
    assert main(["predict", str(out), "a wonderful story"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("a wonderful story\tpos (p = ")


def test_ngrams_with_nothing_to_fit_or_unseen_validation_labels_end_in_one_line(tmp_path, capsys):
    """No n-gram in two training sentences: the run keeps the network alone and says why;
    a validation label the training split never had is left out of choosing w."""
    lonely = tmp_path / "lonely.tsv"
    lonely.write_text("".join(f"w{i}a w{i}b\t{'pos' if i % 2 else 'neg'}\n" for i in range(200)))
    args = ["--model.ngrams", "2", "--train.max_steps", "3", *QUIET]
    out = tmp_path / "lonely"
    assert main(["train", "sentiment", "--preset", "tiny", "--data.path", str(lonely),
                 "--out", str(out), *args]) == 0  # fmt: skip
    assert "no word n-gram is in two training sentences" in capsys.readouterr().out
    lines = []
    for i in range(300):
        text, label = (f"good film {i}", "pos") if i % 2 else (f"bad film {i}", "neg")
        if td.split_of(text) == "val" and i % 7 == 0:
            label = "odd"  # seen in validation only
        lines.append(f"{text}\t{label}\n")
    odd = tmp_path / "odd.tsv"
    odd.write_text("".join(lines))
    out = tmp_path / "odd"
    assert main(["train", "sentiment", "--preset", "tiny", "--data.path", str(odd),
                 "--out", str(out), *args]) == 0  # fmt: skip
    assert "n-grams: a naive-Bayes logistic regression over" in capsys.readouterr().out
