"""rnnkit.data: reading text, vocabularies, corpora as memory-mapped ids, the split, batching."""

from __future__ import annotations

import json
import os
import random
from collections import Counter

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from rnnkit.data import (
    EOS,
    UNK,
    StreamBatcher,
    Vocab,
    apply_split,
    default_corpus_text,
    encode_corpus,
    iter_text,
    read_text,
    split_blocks,
    tokenize_words,
)
from rnnkit.errors import UserError

# --- read_text --------------------------------------------------------------------------------


def one_line_naming(err: pytest.ExceptionInfo[UserError], path) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    assert str(path) in msg
    return msg


def test_read_text_missing(tmp_path):
    path = tmp_path / "nope.txt"
    with pytest.raises(UserError) as err:
        read_text(path)
    assert "no such file" in one_line_naming(err, path)


def test_read_text_directory(tmp_path):
    with pytest.raises(UserError) as err:
        read_text(tmp_path)
    assert "directory" in one_line_naming(err, tmp_path)


def test_read_text_empty(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(UserError) as err:
        read_text(path)
    assert "empty" in one_line_naming(err, path)


def test_read_text_binary(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(b"PK\x03\x04" + bytes(range(256)) * 10)
    with pytest.raises(UserError) as err:
        read_text(path)
    assert "binary" in one_line_naming(err, path)


def test_read_text_utf16_is_binary_with_a_hint(tmp_path):
    path = tmp_path / "utf16.txt"
    path.write_bytes("hello\n".encode("utf-16"))
    with pytest.raises(UserError) as err:
        read_text(path)
    assert "UTF-16" in one_line_naming(err, path)


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1 << 20])
def test_not_utf8_names_offset_and_line(tmp_path, chunk_size):
    path = tmp_path / "latin1.txt"
    good = "first line\nsecond — line\nthird\n".encode()
    path.write_bytes(good + "café au lait\n".encode("latin-1"))
    offset = len(good) + 3
    with pytest.raises(UserError) as err:
        "".join(iter_text(path, chunk_size))
    msg = one_line_naming(err, path)
    assert f"offset {offset}" in msg and "line 4" in msg and "0xe9" in msg


def test_truncated_utf8_at_end_of_file(tmp_path):
    path = tmp_path / "cut.txt"
    path.write_bytes("ab\ncd é".encode()[:-1])
    with pytest.raises(UserError) as err:
        read_text(path)
    assert "line 2" in one_line_naming(err, path)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 64])
def test_multibyte_characters_split_across_chunks(tmp_path, chunk_size):
    text = "aé€😀\nβγ — “quoted” ’tis\r\nend 😀"
    path = tmp_path / "multi.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # with a BOM, which is dropped
    pieces = list(iter_text(path, chunk_size))
    assert "".join(pieces) == text.replace("\r\n", "\n")
    assert read_text(path) == text.replace("\r\n", "\n")


# --- vocabularies -----------------------------------------------------------------------------


def test_char_vocab_round_trip():
    text = "To be, or not to be: that is the question.\n"
    vocab = Vocab.from_chars(text)
    assert vocab.tokens == sorted(set(text)) and len(vocab) == len(set(text))
    assert Vocab.from_chars(Counter(text)) == vocab
    assert vocab.unk_token is None and vocab.eos_token is None and vocab.level == "char"
    ids = vocab.encode(text)
    assert ids.dtype == np.int64 and vocab.decode(ids) == text
    assert vocab.decode(torch.from_numpy(ids)) == text
    d = json.loads(json.dumps(vocab.to_dict()))
    again = Vocab.from_dict(d)
    assert again == vocab and again.stoi == vocab.stoi and again.to_dict() == vocab.to_dict()


def test_char_vocab_unknown_characters_named():
    vocab = Vocab.from_chars("abc ")
    assert vocab.unknown("abzyx!") == ["!", "x", "y", "z"]
    with pytest.raises(UserError) as err:
        vocab.encode("a bz yxz")
    msg = str(err.value)
    assert "never seen in training" in msg and "'x', 'y', 'z'" in msg and "\n" not in msg
    with pytest.raises(UserError, match="and 2 more"):
        vocab.encode("ABCDEFGHIJKL")


def test_word_vocab_specials_order_cap_and_min_count():
    counts = Counter({"the": 5, "a": 5, "king": 3, "queen": 2, "fool": 1, "hat": 1})
    vocab = Vocab.from_words(counts, max_size=6)
    assert vocab.tokens == [UNK, EOS, "a", "the", "king", "queen"]
    assert vocab.unk_token == UNK and vocab.eos_token == EOS and vocab.level == "word"
    assert Vocab.from_words(counts, max_size=100, min_count=2).tokens[2:] == [
        "a",
        "the",
        "king",
        "queen",
    ]
    assert len(Vocab.from_words(counts, max_size=100)) == 8
    with pytest.raises(UserError):
        Vocab.from_words(counts, max_size=1)


def test_word_vocab_encode_decode_and_unknowns():
    text = "Good night, sweet prince:\nAnd flights of angels sing thee to thy rest!\n"
    vocab = Vocab.from_words(Counter(tokenize_words(text)), max_size=1000)
    ids = vocab.encode(text)
    assert (ids == vocab.stoi[EOS]).sum() == 2
    assert vocab.decode(ids) == (
        "Good night , sweet prince :\nAnd flights of angels sing thee to thy rest !\n"
    )
    assert vocab.encode("Good morrow\nprince").tolist() == [
        vocab.stoi["Good"],
        vocab.stoi[UNK],
        vocab.stoi[EOS],
        vocab.stoi["prince"],
    ]
    assert vocab.unknown("Good morrow, Yorick") == ["Yorick", "morrow"]
    assert vocab.encode(["night", "zzz"]).tolist() == [vocab.stoi["night"], 0]
    again = Vocab.from_dict(json.loads(json.dumps(vocab.to_dict())))
    assert again == vocab and again.decode(ids) == vocab.decode(ids)


def test_tokenize_words_rule():
    assert tokenize_words("Perform'd o’er don't, 'tis--well! x_1 2nd") == [
        "Perform'd",
        "o’er",
        "don't",
        ",",
        "'",
        "tis",
        "-",
        "-",
        "well",
        "!",
        "x_1",
        "2nd",
    ]


def test_vocab_from_dict_rejects_bad_input():
    with pytest.raises(UserError, match="unknown keys"):
        Vocab.from_dict({"level": "char", "tokens": ["a"], "extra": 1})
    with pytest.raises(UserError):
        Vocab.from_dict({"level": "char", "tokens": ["a", "a"]})
    with pytest.raises(UserError):
        Vocab.from_dict({"level": "word", "tokens": ["a"], "unk_token": None})


# --- corpora ----------------------------------------------------------------------------------


def generated_text(n_chars: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    words = ["the", "king", "queen", "Hamlet", "ay", "café", "naïve", "—", "!", ",", "Ωμέγα", "😀"]
    lines = []
    size = 0
    while size < n_chars:
        line = " ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("level", ["char", "word"])
def test_encode_corpus_matches_in_memory_and_is_memmap(tmp_path, level):
    text = generated_text(200_000)
    path = tmp_path / "corpus.txt"
    path.write_text(text, encoding="utf-8")
    cache = tmp_path / "cache"
    ids, vocab = encode_corpus(path, level, cache_dir=cache, chunk_size=4099)
    assert isinstance(ids, np.memmap) and not ids.flags.writeable
    assert ids.dtype == np.uint8 and ids.ndim == 1
    if level == "char":
        expected_vocab = Vocab.from_chars(text)
    else:
        expected_vocab = Vocab.from_words(Counter(tokenize_words(text)), 50_000)
    assert vocab == expected_vocab
    np.testing.assert_array_equal(ids, expected_vocab.encode(read_text(path)))
    assert vocab.decode(ids) == (text if level == "char" else vocab.decode(vocab.encode(text)))
    # A second call reuses the cached array.
    files = sorted(p.name for p in cache.iterdir())
    again, vocab2 = encode_corpus(path, level, cache_dir=cache)
    assert vocab2 == vocab and sorted(p.name for p in cache.iterdir()) == files
    np.testing.assert_array_equal(again, ids)


def test_encode_corpus_with_training_vocab(tmp_path):
    train = tmp_path / "train.txt"
    other = tmp_path / "other.txt"
    train.write_text("abc abc\n", encoding="utf-8")
    other.write_text("cab\nbad xyz\n", encoding="utf-8")
    _, vocab = encode_corpus(train, "char", cache_dir=tmp_path)
    with pytest.raises(UserError) as err:
        encode_corpus(other, "char", vocab, cache_dir=tmp_path)
    msg = one_line_naming(err, other)
    assert "never seen in training" in msg and "'d', 'x', 'y', 'z'" in msg
    _, wvocab = encode_corpus(train, "word", cache_dir=tmp_path)
    ids, _ = encode_corpus(other, "word", wvocab, cache_dir=tmp_path)
    assert wvocab.decode(ids) == "<unk>\n<unk> <unk>\n"


def test_encode_corpus_large_vocab_dtype(tmp_path):
    text = "".join(chr(0x4E00 + i) for i in range(300)) * 3
    path = tmp_path / "han.txt"
    path.write_text(text, encoding="utf-8")
    ids, vocab = encode_corpus(path, "char", cache_dir=tmp_path, chunk_size=100)
    assert ids.dtype == np.uint16 and len(vocab) == 300 and vocab.decode(ids) == text


def test_bundled_corpus():
    text = default_corpus_text()
    assert len(text) >= 2_400_000
    for title in ("ROMEO AND JULIET", "HAMLET", "MACBETH", "KING LEAR", "OTHELLO"):
        assert title in text
    ids, vocab = encode_corpus(None, "char")
    assert len(ids) == len(text) and vocab.decode(ids[:1000]) == text[:1000]


# --- the split --------------------------------------------------------------------------------


def test_split_blocks_assignment():
    train, val = split_blocks(1_000_000 + 123, block_size=50_000, every=20)
    assert val == [(950_000, 1_000_000)]
    assert train == [(0, 950_000), (1_000_000, 1_000_123)]
    train, val = split_blocks(100 * 10, block_size=10, every=20)
    assert val == [(190, 200), (390, 400), (590, 600), (790, 800), (990, 1000)]
    assert sum(b - a for a, b in val) == 50


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 5000),
    block_size=st.integers(1, 300),
    every=st.integers(2, 25),
)
def test_split_blocks_disjoint_and_covering(n, block_size, every):
    train, val = split_blocks(n, block_size, every, min_val=40)
    covered = np.zeros(n, dtype=np.int64)
    for a, b in train + val:
        assert 0 <= a < b <= n
        covered[a:b] += 1
    assert (covered == 1).all()
    if n >= block_size * every:
        for a, _ in val:
            assert a % block_size == 0 and (a // block_size) % every == every - 1
    elif n:
        n_val = sum(b - a for a, b in val)
        assert val[-1][1] == n and n_val >= -(-n // every)


def test_split_short_corpus_uses_last_part():
    train, val = split_blocks(10_000)
    assert train == [(0, 9_500)] and val == [(9_500, 10_000)]
    train, val = split_blocks(1_000)
    assert train == [(0, 750)] and val == [(750, 1000)]


def test_apply_split_arrays_and_memmaps(tmp_path):
    ids = np.arange(1000) % 251
    train, val = apply_split(ids, block_size=10, every=20)
    assert len(train) == 950 and len(val) == 50
    np.testing.assert_array_equal(val[:10], ids[190:200])
    np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.sort(ids))

    path = tmp_path / "c.npy"
    np.save(path, ids.astype(np.uint8))
    mm = np.load(path, mmap_mode="r")
    mtrain, mval = apply_split(mm, block_size=10, every=20)
    assert isinstance(mtrain, np.memmap) and isinstance(mval, np.memmap)
    np.testing.assert_array_equal(mtrain, train)
    np.testing.assert_array_equal(mval, val)

    short_train, short_val = apply_split(mm, block_size=50_000)  # contiguous: views
    assert np.shares_memory(short_val, mm) and len(short_val) == 250


def test_apply_split_too_small(tmp_path):
    with pytest.raises(UserError) as err:
        apply_split(np.arange(30), min_tokens=20, name="tiny.txt")
    msg = str(err.value)
    assert "tiny.txt" in msg and "30 tokens" in msg


# --- batching ---------------------------------------------------------------------------------


def test_stream_batcher_layout():
    ids = np.arange(103)  # 4 streams of 25 (3 dropped), 24 input positions each
    b = StreamBatcher(ids, batch_size=4, bptt_len=5)
    assert b.stream_len == 25 and len(b) == 5
    windows = list(b)
    assert [x.shape for x, _ in windows] == [(5, 4)] * 4 + [(4, 4)]
    for i, (x, y) in enumerate(windows):
        assert x.dtype == torch.int64 and y.dtype == torch.int64
        assert torch.equal(y[:-1], x[1:])  # y is x shifted by one
        for s in range(4):
            start = s * 25 + i * 5
            assert x[:, s].tolist() == list(range(start, start + len(x)))
            assert y[:, s].tolist() == list(range(start + 1, start + 1 + len(x)))
        wx, wy = b.window(i)
        assert torch.equal(wx, x) and torch.equal(wy, y)
    # The streams, window after window, are contiguous: row s is ids[25 s : 25 s + 24].
    xs = torch.cat([x for x, _ in windows])
    assert torch.equal(xs.T, torch.arange(100).reshape(4, 25)[:, :24])
    assert [len(x) for x, _ in b.windows(3)] == [5, 4]


def test_stream_batcher_last_window_one_step():
    b = StreamBatcher(np.arange(22), batch_size=2, bptt_len=5)  # 10 inputs per stream
    assert len(b) == 2 and b.window_len(1) == 5
    b = StreamBatcher(np.arange(24), batch_size=2, bptt_len=5)  # 11 inputs per stream
    assert len(b) == 3 and b.window(2)[0].shape == (1, 2)
    with pytest.raises(IndexError):
        b.window(3)


@pytest.mark.parametrize("world_size", [2, 4])
def test_ranks_partition_the_global_batch(tmp_path, world_size):
    path = tmp_path / "ids.npy"
    np.save(path, (np.arange(10_007) * 7 % 200).astype(np.uint8))
    ids = np.load(path, mmap_mode="r")
    single = StreamBatcher(ids, batch_size=8, bptt_len=35)
    ranks = [StreamBatcher(ids, 8, 35, rank=r, world_size=world_size) for r in range(world_size)]
    assert all(len(r) == len(single) for r in ranks)
    for i in range(len(single)):
        x, y = single.window(i)
        parts = [r.window(i) for r in ranks]
        assert all(px.shape == (len(x), 8 // world_size) for px, _ in parts)
        assert torch.equal(torch.cat([px for px, _ in parts], dim=1), x)
        assert torch.equal(torch.cat([py for _, py in parts], dim=1), y)


def test_stream_batcher_accepts_lists_and_tensors():
    a = StreamBatcher(list(range(50)), 2, 4)
    b = StreamBatcher(torch.arange(50), 2, 4)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b, strict=True))


def test_stream_batcher_errors():
    with pytest.raises(UserError, match="divisible"):
        StreamBatcher(np.arange(100), batch_size=6, bptt_len=5, rank=0, world_size=4)
    with pytest.raises(UserError) as err:
        StreamBatcher(np.arange(15), batch_size=8, bptt_len=5, name="val split of x.txt")
    msg = str(err.value)
    assert "val split of x.txt" in msg and "15 tokens" in msg and "8 streams" in msg
    with pytest.raises(UserError):
        StreamBatcher(np.arange(100), batch_size=0, bptt_len=5)
    with pytest.raises(UserError):
        StreamBatcher(np.arange(100), batch_size=4, bptt_len=0)
    with pytest.raises(UserError):
        StreamBatcher(np.arange(100), batch_size=4, bptt_len=5, rank=2, world_size=2)


def test_a_nul_byte_anywhere_marks_a_binary_file(tmp_path):
    path = tmp_path / "late.txt"
    offset = 3 * 8192 + 5
    path.write_bytes(b"a" * offset + b"\x00b\n")
    for chunk_size in (4096, 1 << 20):
        with pytest.raises(UserError) as err:
            read_text(path) if chunk_size > 4096 else "".join(iter_text(path, chunk_size))
        assert f"NUL byte at offset {offset}" in one_line_naming(err, path)
    with pytest.raises(UserError, match="binary"):
        encode_corpus(path, "char", cache_dir=tmp_path / "cache")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_a_fifo_is_not_a_regular_file(tmp_path):
    path = tmp_path / "pipe"
    os.mkfifo(path)
    with pytest.raises(UserError) as err:  # refused before it is opened: no blocking read
        read_text(path)
    assert "is not a regular file" in one_line_naming(err, path)


def test_an_unwritable_cache_is_one_line(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text("some text\n" * 10)
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(UserError) as err:
        encode_corpus(path, "char", cache_dir=blocker)
    assert "cannot write the encoded corpus" in one_line_naming(err, blocker)
