"""Reading UTF-8 text files, whole or streamed in chunks, and the bundled corpus.

Reading rules, the same for every path (``read_text``, ``iter_text``, and ``encode_corpus``,
which streams through ``iter_text``): UTF-8 only; a leading byte-order mark is dropped; Windows
line ends ``\\r\\n`` become ``\\n`` (a lone ``\\r`` is kept). Large files are never held whole in
memory: an incremental UTF-8 decoder carries a character split across chunks. Problems are
``UserError``s of one line that name the file.
"""

from __future__ import annotations

import codecs
import functools
import gzip
import os
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

from rnnkit.errors import UserError

PathLike = str | os.PathLike[str]

CHUNK_SIZE = 1 << 24
"""Bytes read (and decoded, counted, encoded) at a time from a corpus file: 16 MiB."""

BINARY_SNIFF = 8192
"""A NUL byte in the first this many bytes gets the UTF-16 hint; one anywhere marks a file as
binary (every chunk is searched: ``bytes.find`` costs little beside decoding)."""

DEFAULT_CORPUS = "corpora/shakespeare.txt.gz"
"""The bundled corpus, relative to the ``rnnkit.data`` package (see corpora/PROVENANCE.md)."""


def _check_file(path: Path) -> None:
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a directory, expected a UTF-8 text file")
    if not path.is_file():  # a FIFO would block the reader, then be empty for the second pass
        raise UserError(
            f"{path}: is not a regular file (a pipe, socket or device), expected a UTF-8 text file"
        )
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    if size == 0:
        raise UserError(f"{path}: is empty, expected UTF-8 text")


def _iter_decoded(path: Path, chunk_size: int) -> Iterator[str]:
    """Decoded pieces of a file, validated; BOM and \\r\\n not yet handled."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="strict")
    consumed = 0  # bytes handed to the decoder so far
    newlines = 0  # b"\n" among them
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
    with f:
        while True:
            try:
                chunk = f.read(chunk_size)
            except OSError as e:
                raise UserError(f"{path}: cannot read: {e.strerror or e}") from None
            final = not chunk
            nul = chunk.find(b"\0")
            if nul >= 0:  # anywhere in the file: a NUL is no character of a text
                head = chunk[:2] if consumed == 0 else b""
                hint = (
                    "; it looks like UTF-16 text, save it as UTF-8"
                    if head in (b"\xff\xfe", b"\xfe\xff") and nul < BINARY_SNIFF
                    else ", expected UTF-8 text"
                )
                raise UserError(
                    f"{path}: looks like a binary file (NUL byte at offset {consumed + nul})" + hint
                )
            pending = len(decoder.getstate()[0])
            try:
                text = decoder.decode(chunk, final=final)
            except UnicodeDecodeError as e:
                data = e.object
                offset = consumed - pending + e.start
                line = newlines + data.count(b"\n", pending, max(pending, e.start)) + 1
                raise UserError(
                    f"{path}: not valid UTF-8: byte 0x{data[e.start]:02x} at offset {offset} "
                    f"(line {line}); save the file as UTF-8"
                ) from None
            consumed += len(chunk)
            newlines += chunk.count(b"\n")
            if text:
                yield text
            if final:
                return


def iter_text(path: PathLike, chunk_size: int = CHUNK_SIZE) -> Iterator[str]:
    """Stream a UTF-8 text file as decoded pieces of about ``chunk_size`` bytes each.

    A character whose bytes straddle two chunks is decoded whole (an incremental decoder), so
    ``"".join(iter_text(p, n))`` is the same for every ``n``. Errors (missing file, directory,
    empty, binary, not UTF-8) are ``UserError``s naming the file; a decoding error gives the
    byte offset and line number of the first bad byte, and is raised when that chunk is reached.

    Args:
        path: the file.
        chunk_size: bytes read at a time.

    Returns:
        An iterator of non-empty strings.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be positive, got {chunk_size}")
    path = Path(path)
    _check_file(path)
    first = True
    carry = ""  # a trailing "\r" held back in case the next piece starts with "\n"
    for piece in _iter_decoded(path, chunk_size):
        if first:
            first = False
            if piece.startswith("\ufeff"):
                piece = piece[1:]
        piece = carry + piece
        carry = ""
        if piece.endswith("\r"):
            piece, carry = piece[:-1], "\r"
        piece = piece.replace("\r\n", "\n")
        if piece:
            yield piece
    if carry:
        yield carry


def read_text(path: PathLike) -> str:
    """Read a whole UTF-8 text file.

    The file is read and validated once, in chunks (see ``iter_text``).

    Args:
        path: the file.

    Returns:
        Its text (BOM dropped, ``\\r\\n`` -> ``\\n``).

    Raises:
        UserError: one line naming the file, if it is missing, a directory or another kind of
            non-regular file (a FIFO), empty, binary (a NUL byte anywhere, with its offset) or
            not UTF-8 (with the offset and line of the first bad byte).
    """
    return "".join(iter_text(path))


@functools.lru_cache(maxsize=1)
def default_corpus_text() -> str:
    """The bundled corpus: 19 of Shakespeare's works, 2.5 M characters (corpora/PROVENANCE.md).

    Returns:
        Its text.
    """
    data = resources.files("rnnkit.data").joinpath(DEFAULT_CORPUS).read_bytes()
    return gzip.decompress(data).decode("utf-8")


def iter_line_chunks(path: Path, chunk_size: int) -> Iterator[str]:
    """Pieces of the text that end at line breaks (the last piece may not)."""
    rest = ""
    for piece in iter_text(path, chunk_size):
        piece = rest + piece
        cut = piece.rfind("\n") + 1
        rest = piece[cut:]
        if cut:
            yield piece[:cut]
    if rest:
        yield rest
