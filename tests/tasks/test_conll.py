"""The CoNLL reader: columns, sentences, -DOCSTART-, IOB1/IOBES to BIO, the binary form, and
one-line errors naming the file and line."""

from __future__ import annotations

import pytest

from rnnkit.errors import UserError
from rnnkit.tasks.conll import binary, binary_to_bio, entity_types, read_conll, to_bio
from rnnkit.tasks.ner import DEFAULT_PATH


def write(tmp_path, text: str, name: str = "d.conll"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_columns_sentences_docstart_and_spaces(tmp_path):
    text = (
        "-DOCSTART- -X- -X- O\n\n"
        "EU NNP B-NP B-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP B-MISC\n\n\n"  # spaces
        "Peter\tNNP\tB-NP\tB-PER\nBlackburn\tNNP\tI-NP\tI-PER\n"  # tabs, no final blank line
    )
    path = write(tmp_path, text)
    sents = read_conll(path)
    assert sents == [
        (["EU", "rejects", "German"], ["B-ORG", "O", "B-MISC"]),
        (["Peter", "Blackburn"], ["B-PER", "I-PER"]),
    ]
    pos = read_conll(path, column=1, scheme="none")
    assert pos[0][1] == ["NNP", "VBZ", "JJ"]
    chunks = read_conll(path, column=-2)
    assert chunks[1][1] == ["B-NP", "I-NP"]


def test_full_width_space_is_a_token(tmp_path):
    path = write(tmp_path, "東京\tB-LOC\n\u3000\tO\n駅\tO\n")
    assert read_conll(path) == [(["東京", "\u3000", "駅"], ["B-LOC", "O", "O"])]


def test_iob1_to_bio():
    # IOB1: chunks start with I-; B- only splits two adjacent chunks of the same type
    iob1 = ["I-PER", "I-PER", "B-PER", "O", "I-LOC", "I-ORG", "I-ORG"]
    assert to_bio(iob1, "iob1") == ["B-PER", "I-PER", "B-PER", "O", "B-LOC", "B-ORG", "I-ORG"]
    # BIO files with an I- after O are read the way seqeval reads them: a chunk starts
    assert to_bio(["O", "I-PER", "B-PER", "I-PER"], "bio") == ["O", "B-PER", "B-PER", "I-PER"]


def test_iobes_to_bio():
    iobes = ["S-PER", "B-LOC", "I-LOC", "E-LOC", "O", "S-LOC", "S-LOC", "B-ORG", "E-ORG"]
    assert to_bio(iobes, "iobes") == [
        "B-PER", "B-LOC", "I-LOC", "I-LOC", "O", "B-LOC", "B-LOC", "B-ORG", "I-ORG",
    ]  # fmt: skip
    # after E-X a new chunk starts even if the type repeats with I-
    assert to_bio(["B-A", "E-A", "I-A"], "iobes") == ["B-A", "I-A", "B-A"]


def test_binary_form_and_back():
    tags = ["B-PER", "I-PER", "O", "B-LOC", "B-PER", "B-PER"]
    assert binary(tags, "PER") == ["1", "1", "0", "0", "1", "1"]
    assert binary(tags, "LOC") == ["0", "0", "0", "1", "0", "0"]
    # adjacent entities merge: the binary form cannot separate them
    assert binary_to_bio(binary(tags, "PER"), "PER") == [
        "B-PER",
        "I-PER",
        "O",
        "O",
        "B-PER",
        "I-PER",
    ]


@pytest.mark.parametrize(
    "text,options,line,words",
    [
        ("a\tO\nb\n", {}, 2, "without a tag"),
        ("a B-PER\n\nb PER\n", {}, 3, "'PER' is not in the bio scheme"),
        ("a X-PER\n", {}, 1, "'X-PER'"),
        ("a B-\n", {}, 1, "'B-'"),
        ("a S-PER\n", {"scheme": "bio"}, 1, "'S-PER'"),
        ("a E-PER\n", {"scheme": "iob1"}, 1, "'E-PER'"),
        ("a\tb\tO\nc\tO\n", {"column": 2}, 2, "no tag in column 2"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path, text, options, line, words):
    path = write(tmp_path, text, "bad.conll")
    with pytest.raises(UserError) as info:
        read_conll(path, **options)
    message = str(info.value)
    assert message.startswith(f"{path}:{line}: ") and words in message and "\n" not in message


def test_empty_missing_and_bad_options(tmp_path):
    with pytest.raises(UserError, match="no sentences"):
        read_conll(write(tmp_path, "-DOCSTART- O\n\n\n"))
    with pytest.raises(UserError, match="missing.conll"):
        read_conll(tmp_path / "missing.conll")
    with pytest.raises(UserError, match="option 'data.scheme'"):
        read_conll(write(tmp_path, "a O\n"), scheme="bilou")
    with pytest.raises(UserError, match="option 'data.column' is 0"):
        read_conll(write(tmp_path, "a O\n"), column=0)


@pytest.mark.skipif(not DEFAULT_PATH.exists(), reason="the shared Japanese corpus is not here")
def test_the_japanese_corpus_reads_as_documented():
    sents = read_conll(DEFAULT_PATH)
    assert len(sents) == 500 and sum(len(t) for t, _ in sents) == 15_520
    assert entity_types(sents) == ["ART", "DAT", "LOC", "MON", "ORG", "PER", "PSN", "TIM"]
    assert sents[0][0][:2] == ["2005", "年"] and sents[0][1][:2] == ["B-DAT", "I-DAT"]
