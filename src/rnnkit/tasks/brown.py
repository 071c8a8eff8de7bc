"""The Brown corpus (and any corpus in its format): reading, the split by file, the tag sets.

Format (NLTK's distribution of the Brown corpus, Francis & Kucera 1964/1979): one file per
text (``ca01`` .. ``cr09``), one sentence per non-blank line, tokens separated by white space,
each token ``word/tag`` split at its *last* slash (``1/2/cd`` is the word ``1/2``). A
directory or a ``.tar``/``.tar.gz`` archive is read file by file (the file names matching
``files``, a regular expression on the base name; NLTK's Brown names by default); a single
file is read as one text. A token without a tag is an error naming the file and line.

Split: by file, fixed by a hash of the file id (``held_out_bucket(id, salt="brown")``):
buckets 0-9 test, 10-19 validation, the rest training (80/10/10 in expectation; the Brown
corpus's 500 files fall 398 / 47 / 55: 45,154 / 5,620 / 6,566 sentences, 923,159 / 109,514 /
128,519 tokens). A single file is split by sentence, by a hash of its line number.

Tag sets (``tagset``):

- ``full``: the tags as written, lower-cased (472 distinct tags in the Brown corpus).
- ``base``: ``base_tag`` strips what the Brown tag documentation calls tag modifiers:
  1. a ``fw-`` prefix (foreign word: ``fw-nn`` -> ``nn``, ``fw-*`` -> ``*``);
  2. everything from the first ``+`` on: a contraction keeps its first part (``ppss+md``
     "I'd" -> ``ppss``; ``pps+bez`` "it's" -> ``pps``; ``fw-in+at-tl`` -> ``in``);
  3. the suffixes ``-tl`` (in a title), ``-hl`` (in a headline), ``-nc`` (cited word), as often
     as they occur (``nn-tl-hl`` -> ``nn``; ``---hl`` -> ``--``), and the truncated ``-t`` /
     ``-n`` the corpus has once each (``fw-in+at-t``, ``ppss+ber-n``; already cut by step 2).
  The negation ``*`` (``do*`` "don't") and the possessive ``$`` (``np$``) are kept: they are
  tags of their own in the documentation. This leaves 104 tags on the Brown corpus (80
  without the ``*`` and ``$`` forms).
- ``universal``: the 12 tags of Petrov, Das & McDonald 2012 ("A universal part-of-speech
  tagset", LREC; mapping files at github.com/slavpetrov/universal-pos-tags): a foreign word
  (``fw-``) is X; any other tag is mapped by its base tag through ``UNIVERSAL`` below, written
  from the Brown tag documentation (Francis & Kucera, Brown Corpus Manual, 1979) following the
  project's ``en-brown.map``. Where that map is unusual we follow it: ``abl`` (quite, rather)
  and ``abn`` (all, half) -> PRT, ``abx`` (both) -> DET, ``ap`` (many, other) -> ADJ, ``ap$``
  -> PRT, ``cs`` (subordinating conjunctions) -> ADP, ``ex`` (existential there) -> DET.
  Contractions take the tag of their first part (our choice: the token is one word, e.g.
  "it's" PRON, "I'd" PRON); negated verbs (``do*``, ``bedz*``) are VERB; ``*`` (not, n't) ADV;
  ``nil`` (no tag) and ``uh`` (interjections) X.
"""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterator
from pathlib import Path

from rnnkit.data.pairs import held_out_bucket
from rnnkit.errors import UserError

BROWN_FILES = r"c[a-z]\d\d"  # NLTK's Brown file ids
TEST_BUCKETS, VAL_BUCKETS = range(0, 10), range(10, 20)  # of held_out_bucket's 100
TAGSETS = ("full", "base", "universal")
UNIVERSAL_TAGS = (
    "ADJ",
    "ADP",
    "ADV",
    "CONJ",
    "DET",
    "NOUN",
    "NUM",
    "PRON",
    "PRT",
    "VERB",
    "X",
    ".",
)

_GROUPS = {
    ".": "( ) , -- . : `` '' ' ! ? ;",
    "ADJ": "ap jj jjr jjs jjt od",
    "ADP": "cs in",
    "ADV": "* ql qlp rb rbr rbt rn wql wrb",
    "CONJ": "cc",
    "DET": "abx at dt dti dts dtx ex wdt",
    "NOUN": "nn nn$ nns nns$ np np$ nps nps$ nr nr$ nrs pn pn$",
    "NUM": "cd cd$",
    "PRON": "pp$ pp$$ ppl ppls ppo pps ppss wp$ wpo wps",
    "PRT": "abl abn ap$ rp to",
    "VERB": "be bed bedz beg bem ben ber bez do dod doz hv hvd hvg hvn hvz md vb vbd vbg vbn vbz",
    "X": "fw nil uh",
}
UNIVERSAL = {tag: u for u, tags in _GROUPS.items() for tag in tags.split()}
"""Base tag -> universal tag (negated forms ``do*``, ``bedz*``, ... and possessives ``jj$``,
``rb$``, ``dt$`` ... not listed fall back to the tag without its ``*`` / ``$``)."""

_SUFFIX = re.compile(r"(-(tl|hl|nc|t|n))+$")


def base_tag(tag: str) -> str:
    """The Brown tag without its modifiers (see the module docstring): ``fw-`` prefix, all from
    the first ``+`` on, ``-tl``/``-hl``/``-nc`` suffixes."""
    tag = tag.lower()
    if tag.startswith("fw-"):
        tag = tag[3:]
    tag = tag.split("+", 1)[0]
    stripped = _SUFFIX.sub("", tag)
    return stripped or tag


def universal_tag(tag: str) -> str:
    """The universal tag (Petrov et al. 2012) of a Brown tag; a tag we cannot map is an error
    (raised as KeyError naming it)."""
    low = tag.lower()
    if low.startswith("fw-"):
        return "X"
    base = base_tag(low)
    for key in (base, base.rstrip("*"), base.rstrip("*$")):
        if key in UNIVERSAL:
            return UNIVERSAL[key]
    raise KeyError(tag)


def map_tag(tag: str, tagset: str) -> str:
    if tagset == "full":
        return tag.lower()
    if tagset == "base":
        return base_tag(tag)
    if tagset == "universal":
        return universal_tag(tag)
    raise ValueError(f"tagset must be one of {', '.join(TAGSETS)}, got {tagset!r}")


# ---- reading ---------------------------------------------------------------------------------
def parse_text(text: str, where: str, tagset: str = "full"):
    """The sentences of one file's text: a list of (tokens, tags), each sentence with its line
    number. ``where`` names the file in errors."""
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        parts = line.split()
        if not parts:
            continue
        tokens, tags = [], []
        for part in parts:
            word, slash, tag = part.rpartition("/")
            if not slash or not word or not tag:
                raise UserError(
                    f"{where}:{n}: token {part!r} has no tag: expected word/tag tokens "
                    "separated by spaces"
                )
            try:
                tags.append(map_tag(tag, tagset))
            except KeyError:
                raise UserError(
                    f"{where}:{n}: tag {tag!r} of {word!r} has no universal tag: use "
                    "data.tagset full or base"
                ) from None
            tokens.append(word)
        out.append((n, tokens, tags))
    return out


def _decode(data: bytes, where: str) -> str:
    if b"\0" in data:
        raise UserError(f"{where}: a binary file, not word/tag text")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")  # older corpora in this format are Latin-1


def corpus_files(path: str | Path, files: str = BROWN_FILES) -> Iterator[tuple[str, str, str]]:
    """(file id, name for errors, text) of each corpus file under ``path``: a directory or a
    tar archive (the base names matching ``files``, in sorted order), or one file."""
    path = Path(path)
    pattern = re.compile(files)
    if not path.exists():
        raise UserError(f"{path}: no such file or directory (a word/tag corpus)")
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if p.is_file() and pattern.fullmatch(p.name))
        if not found:
            raise UserError(f"{path}: no files named like {files!r} (option data.files)")
        for p in found:
            yield p.name, str(p), _decode(p.read_bytes(), str(p))
    elif tarfile.is_tarfile(path):
        with tarfile.open(path) as tar:
            members = sorted(
                (
                    m
                    for m in tar.getmembers()
                    if m.isfile() and pattern.fullmatch(Path(m.name).name)
                ),
                key=lambda m: m.name,
            )
            if not members:
                raise UserError(f"{path}: no files named like {files!r} in the archive")
            for m in members:
                where = f"{path}:{m.name}"
                yield Path(m.name).name, where, _decode(tar.extractfile(m).read(), where)
    else:
        yield path.name, str(path), _decode(path.read_bytes(), str(path))


def split_of(file_id: str) -> str:
    bucket = held_out_bucket(file_id, salt="brown")
    return "test" if bucket in TEST_BUCKETS else "val" if bucket in VAL_BUCKETS else "train"


def read_corpus(
    path: str | Path, tagset: str = "base", files: str = BROWN_FILES, max_files: int = 0
) -> dict[str, list]:
    """The sentences of a word/tag corpus by split: {"train", "val", "test"} -> [(tokens,
    tags)], and "files" -> {split: [file ids]}. Several files split by file (``split_of``);
    one file by sentence. ``max_files`` > 0 reads only the first N files (sorted by name)."""
    texts = []
    for i, item in enumerate(corpus_files(path, files)):
        if max_files and i >= max_files:
            break
        texts.append(item)
    splits: dict[str, list] = {"train": [], "val": [], "test": []}
    by_file: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for file_id, where, text in texts:
        sentences = parse_text(text, where, tagset)
        if len(texts) == 1:
            for n, tokens, tags in sentences:
                splits[split_of(f"{file_id}:{n}")].append((tokens, tags))
            continue
        split = split_of(file_id)
        by_file[split].append(file_id)
        splits[split] += [(tokens, tags) for _, tokens, tags in sentences]
    if not any(splits.values()):
        raise UserError(f"{path}: no tagged sentences found")
    return {**splits, "files": by_file}
