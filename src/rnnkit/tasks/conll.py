"""Reading CoNLL-style column files: one token a line, blank lines between sentences.

Each non-blank line holds a token and its annotations in columns, separated by tabs (or, in a
line without a tab, by runs of spaces, as in CoNLL-2000/2003). The token is the first column;
the tag is the last one, or column ``column`` (0-based; negative counts from the end) when
given. Lines starting with ``-DOCSTART-`` (CoNLL-2003's document markers) are skipped, and so
are repeated blank lines.

Chunk tags (``scheme``) are converted to BIO (IOB2: every chunk starts with ``B-X``) on reading:

- ``bio``, ``iob1``: ``B-X``/``I-X``/``O``. In IOB1 a chunk starts with ``I-X`` and ``B-X``
  only separates two adjacent chunks of the same type; both are read the same way: an ``I-X``
  that does not continue an ``X`` chunk (after ``O``, after another type, or first) starts one,
  so it becomes ``B-X`` (which is also how seqeval reads such a tag).
- ``iobes`` (also called BIOES/BILOU's sibling): ``S-X`` (a one-token chunk) -> ``B-X``,
  ``E-X`` (a chunk's last token) -> ``I-X``; ``B-X``, ``I-X``, ``O`` as they are.
- ``none``: tags as they are (part-of-speech tags, any label set).

A malformed file is one ``UserError`` naming the file and the line: a line with a token but no
tag column, a tag that is not in the scheme (``PER``, ``X-PER``, ``B-``), no sentences at all.

``binary(tags, kind)`` gives the lectures' per-token form: ``1`` if a token lies inside an
entity of type ``kind``, else ``0``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from rnnkit.data.reading import read_text
from rnnkit.errors import UserError

Scheme = Literal["bio", "iob1", "iobes", "none"]
SCHEMES = ("bio", "iob1", "iobes", "none")
PREFIXES = {"bio": "BI", "iob1": "BI", "iobes": "BIES"}
Sentence = tuple[list[str], list[str]]  # (tokens, tags)


def read_conll(
    path: str | Path, column: int | None = None, scheme: Scheme = "bio", what: str = "data"
) -> list[Sentence]:
    """The sentences of a CoNLL-style file as (tokens, tags) pairs, tags converted to BIO.

    Args:
        path: the file (UTF-8).
        column: the tag column, 0-based (negative: from the end); None: the last column.
        scheme: the file's chunk scheme (see the module docstring), or "none" for plain tags.
        what: how to name the file in a message about reading it (e.g. "option 'data.path'").
    Raises:
        UserError: one line naming the file (and line) if it is missing, not UTF-8, malformed.
    """
    if scheme not in SCHEMES:
        raise UserError(f"option 'data.scheme' must be one of {', '.join(SCHEMES)}, got {scheme!r}")
    if column is not None and column == 0:
        raise UserError("option 'data.column' is 0, the token itself; the tag is in another column")
    path = Path(path)
    try:
        text = read_text(path)
    except UserError as e:
        raise UserError(f"CoNLL file ({what}): {e}") from None
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    lines: list[int] = []  # each tag's line number, for messages
    for n, line in enumerate(text.split("\n"), 1):
        if line.startswith("-DOCSTART-") or not line.strip():
            if tokens:
                sentences.append((tokens, to_bio(tags, scheme, path, lines)))
                tokens, tags, lines = [], [], []
            continue
        fields = line.split("\t") if "\t" in line else line.split()
        if column is None and len(fields) < 2:
            raise UserError(
                f"{path}:{n}: a token without a tag ({line.strip()!r}); expected tab- "
                "or space-separated columns, the tag last"
            )
        index = -1 if column is None else column
        if not -len(fields) <= index < len(fields) or index in (0, -len(fields)):
            raise UserError(
                f"{path}:{n}: {len(fields)} column(s), no tag in column {index} "
                f"(option 'data.column'): {line.strip()!r}"
            )
        # only ASCII spaces: a token may be a full-width space (U+3000), as in the Japanese corpus
        token, tag = fields[0].strip(" \r"), fields[index].strip(" \r")
        if not token or not tag:
            raise UserError(f"{path}:{n}: an empty token or tag in {line.strip()!r}")
        tokens.append(token)
        tags.append(tag)
        lines.append(n)
    if tokens:
        sentences.append((tokens, to_bio(tags, scheme, path, lines)))
    if not sentences:
        raise UserError(f"{path}: no sentences (expected token and tag columns)")
    return sentences


def parse_tag(tag: str, scheme: str) -> tuple[str, str] | None:
    """(prefix, type) of a chunk tag, ("O", "") for O, None if it is not in ``scheme``."""
    if tag == "O":
        return "O", ""
    prefix, dash, kind = tag.partition("-")
    if dash and kind and len(prefix) == 1 and prefix in PREFIXES[scheme]:
        return prefix, kind
    return None


def to_bio(
    tags: Sequence[str],
    scheme: str,
    path: str | Path = "tags",
    lines: Sequence[int] | None = None,
) -> list[str]:
    """One sentence's tags in ``scheme`` as BIO tags (IOB2).

    Raises:
        UserError: a tag not in the scheme, naming ``path`` and the tag's line (``lines``).
    """
    if scheme == "none":
        return list(tags)
    out: list[str] = []
    previous = ""  # the type of the chunk the previous token belongs to ("" outside)
    for i, tag in enumerate(tags):
        parsed = parse_tag(tag, scheme)
        if parsed is None:
            where = f"{path}:{lines[i]}" if lines is not None else f"{path}, tag {i + 1}"
            expected = "O or " + ", ".join(f"{p}-TYPE" for p in PREFIXES[scheme])
            raise UserError(
                f"{where}: tag {tag!r} is not in the {scheme} scheme (expected {expected}; "
                "option 'data.scheme' names the file's scheme)"
            )
        prefix, kind = parsed
        if prefix == "O":
            out.append("O")
        elif prefix in "BS" or kind != previous:  # a chunk starts
            out.append("B-" + kind)
        else:  # I or E continuing a chunk of the same type
            out.append("I-" + kind)
        # after E-X or S-X the chunk is closed
        previous = "" if prefix in "OES" else kind
    return out


def entity_types(sentences: Sequence[Sentence]) -> list[str]:
    """The entity types of BIO-tagged sentences, sorted."""
    return sorted({t[2:] for _, tags in sentences for t in tags if t != "O"})


def binary(tags: Sequence[str], kind: str) -> list[str]:
    """The lectures' binary form of BIO tags: "1" inside an entity of type ``kind``, else "0"."""
    return ["1" if t != "O" and t[2:] == kind else "0" for t in tags]


def binary_to_bio(tags: Sequence[str], kind: str) -> list[str]:
    """Binary tags back to BIO, each maximal run of "1" one entity (two adjacent entities of the
    type merge: the binary form cannot tell them apart)."""
    out, inside = [], False
    for t in tags:
        out.append("O" if t != "1" else ("I-" if inside else "B-") + kind)
        inside = t == "1"
    return out
