"""Writing files so that a crash never leaves half of one: the one atomic write of rnnkit.

Checkpoints, configs, logs, benchmark results and encoded corpora are all written this way
(DESIGN.md, "Checkpoints and logs": "Written to a temporary name and renamed").
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
from pathlib import Path

from rnnkit.errors import UserError

__all__ = ["atomic_write", "temporary_name"]

Content = str | bytes | Callable[[Path], object]


def temporary_name(path: Path) -> Path:
    """A fresh hidden name beside ``path``: ``.<name>.<pid>.<random>.tmp``.

    Beside it, so that the rename stays on one file system; hidden and ending in ``.tmp``, so
    that a run directory can sweep away the leftovers of a killed process (``.*.tmp``).
    """
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def atomic_write(
    path: str | os.PathLike, content: Content, *, what: str | None = None, encoding: str = "utf-8"
) -> None:
    """Write a file so that a crash leaves either the old complete file or the new one.

    The content goes to ``temporary_name(path)``; the file is then fsync'ed and ``os.replace``d
    onto ``path`` (atomic on POSIX and Windows), and the directory is fsync'ed so that the rename
    itself survives a power cut. On any error the temporary file is removed.

    Args:
        path: the final file; missing parent directories are created.
        content: the text (written with ``encoding``), the bytes, or a function that writes
            the whole content to the path it is given (e.g. ``safetensors.torch.save_file``
            or ``np.lib.format.open_memmap``).
        what: how error messages name the file (default: its path).
        encoding: for text content.

    Raises:
        UserError: the file cannot be written (an ``OSError``), naming ``what`` or ``path``.
    """
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            tmp.write_text(content, encoding=encoding)
        elif isinstance(content, bytes | bytearray | memoryview):
            tmp.write_bytes(content)
        else:
            content(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {what or path}: {e.strerror or e}") from e
        raise
    with contextlib.suppress(OSError):  # not every platform can open a directory
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
