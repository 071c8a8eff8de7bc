"""The shared tagger: vocabularies, batches (the character model over distinct spellings),
padding that changes nothing, the softmax and CRF losses, decoding, the baseline."""

from __future__ import annotations

import random

import pytest
import torch

from rnnkit.errors import UserError
from rnnkit.tasks.tagger import (
    UNK,
    Tagger,
    TaggerConfig,
    TaggerVocab,
    check_tagger_config,
    length_batches,
    make_tag_batch,
    tag_sentences,
)
from rnnkit.tasks.tagger_task import MostFrequentTag, TokenAccuracy

SENTS = [
    ("The old man the boats .".split(), "at jj nn vb nns .".split()),
    ("The man saw the old boats .".split(), "at nn vbd at jj nns .".split()),
    ("I saw her".split(), "ppss vbd ppo".split()),
]


def small(**kw) -> TaggerConfig:
    base = dict(word_embedding_size=8, char_embedding_size=6, char_hidden_size=5, hidden_size=7)
    return TaggerConfig(**{**base, **kw})


def test_vocabulary_counts_lowercases_and_round_trips():
    v = TaggerVocab.build(SENTS, min_count=2, lowercase=True, tagset=["uh"])
    assert v.words[:2] == ["<pad>", "<unk>"]
    assert v.words[2:5] == ["the", ".", "boats"]  # by count, ties alphabetically
    assert v.word_id("THE") == v.word_id("the") and v.word_id("her") == UNK  # seen once
    assert "uh" in v.tags and v.tags == sorted(v.tags)
    assert {"T", "h", "e"} <= set(v.chars)
    assert TaggerVocab.from_dict(v.to_dict()) == v
    with pytest.raises(UserError, match="tag 'zz' does not occur"):
        v.encode_tags(["zz"])
    with pytest.raises(UserError):
        TaggerVocab.from_dict({"words": []})


def test_batch_runs_the_char_model_over_distinct_spellings():
    v = TaggerVocab.build(SENTS)
    tokens = [s[0] for s in SENTS]
    tags = [v.encode_tags(s[1]) for s in SENTS]
    b = make_tag_batch(v, tokens, [0, 1], tags)
    assert b.words.shape == (7, 2) and b.lengths.tolist() == [6, 7]
    distinct = {w for s in tokens[:2] for w in s}
    assert b.chars.shape[1] == len(distinct) == 7  # "The", "the" differ; "man" once
    assert b.char_lengths.max() == b.chars.shape[0] == 5  # "boats"
    spelled = ["".join(v.chars[c] for c in b.chars[: b.char_lengths[u], u]) for u in range(7)]
    for t, word in enumerate(tokens[1]):  # each token points at its own spelling
        assert spelled[b.word_index[t, 1]] == word
    assert b.mask().sum() == 13 and b.tags[6, 0] == 0


def test_word_dropout_replaces_words_by_unk_from_the_seed():
    v = TaggerVocab.build(SENTS)
    tokens = [s[0] for s in SENTS] * 20
    a = make_tag_batch(v, tokens, range(60), word_dropout=0.5, rng=random.Random(1))
    b = make_tag_batch(v, tokens, range(60), word_dropout=0.5, rng=random.Random(1))
    assert torch.equal(a.words, b.words)
    real = a.mask()
    share = float((a.words[real] == UNK).float().mean())
    assert 0.35 < share < 0.65
    assert make_tag_batch(v, tokens, range(60)).words[real].ne(UNK).all()


def test_length_batches_cover_every_sentence_once():
    lengths = [random.Random(i).randrange(1, 40) for i in range(100)]
    for seed in (None, 3):
        batches = length_batches(lengths, 8, seed=seed, epoch=1)
        assert sorted(i for b in batches for i in b) == list(range(100))
    assert length_batches(lengths, 8, seed=3, epoch=1) == length_batches(lengths, 8, 3, 1)
    assert length_batches(lengths, 8, seed=3, epoch=1) != length_batches(lengths, 8, 3, 2)
    ordered = length_batches(lengths, 8)
    assert [lengths[b[0]] for b in ordered] == sorted(lengths[b[0]] for b in ordered)


@pytest.mark.parametrize("crf", [False, True])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_changes_no_emission(crf, cell):
    torch.manual_seed(0)
    v = TaggerVocab.build(SENTS)
    model = Tagger(len(v.words), len(v.chars), len(v.tags), small(cell=cell, crf=crf)).eval()
    tokens = [s[0] for s in SENTS]
    alone = model(make_tag_batch(v, tokens, [2]))
    together = model(make_tag_batch(v, tokens, [0, 2]))  # "I saw her" padded to 6
    torch.testing.assert_close(together[:3, 1], alone[:3, 0])


@pytest.mark.parametrize("crf", [False, True])
def test_training_fits_a_few_sentences(crf):
    torch.manual_seed(0)
    v = TaggerVocab.build(SENTS)
    model = Tagger(len(v.words), len(v.chars), len(v.tags), small(crf=crf, dropout=0.0))
    tokens = [s[0] for s in SENTS]
    tags = [v.encode_tags(s[1]) for s in SENTS]
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    first = None
    for _ in range(80):
        total, n = model.loss(make_tag_batch(v, tokens, [0, 1, 2], tags))
        first = first if first is not None else total.item() / n
        opt.zero_grad()
        (total / n).backward()
        opt.step()
    assert total.item() / n < 0.1 * first
    assert tag_sentences(model, v, tokens) == [s[1] for s in SENTS]
    assert n == 16


def test_characters_only_and_words_only_models():
    v = TaggerVocab.build(SENTS)
    for cfg in (small(word_embedding_size=0), small(char_embedding_size=0)):
        model = Tagger(len(v.words), len(v.chars), len(v.tags), cfg)
        assert model(make_tag_batch(v, [s[0] for s in SENTS], [0, 1])).shape == (7, 2, len(v.tags))
    with pytest.raises(UserError, match="both 0"):
        check_tagger_config(small(word_embedding_size=0, char_embedding_size=0))
    with pytest.raises(UserError, match="model.dropout"):
        check_tagger_config(small(dropout=1.5))


def test_baseline_and_accuracy_on_unseen_words():
    base = MostFrequentTag(SENTS)
    assert base.tag(["the", "saw", "zebra", "The"]) == ["at", "vbd", "at", "at"]
    v = TaggerVocab.build(SENTS)
    scorer = TokenAccuracy(v, SENTS)
    tokens = [["The", "zebra", "saw", "her"]]
    gold = [["at", "nn", "vbd", "ppo"]]
    pred = [["at", "nn", "vbd", "ppss"]]
    m = scorer.metrics(scorer.sums(tokens, gold, pred))
    assert m["accuracy"] == 0.75 and m["unseen_accuracy"] == 1.0 and m["unseen_share"] == 0.25
    assert m["baseline_accuracy"] == 0.75 and m["baseline_unseen_accuracy"] == 0.0
