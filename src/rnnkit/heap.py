"""Freed memory kept in the process's heap for the next step, instead of returned to the system.

A training step allocates and frees the same large tensors every step: gate buffers, saved
activations, their gradients, each one to hundreds of MB. glibc's malloc serves a block above
its mmap threshold (128 KB at start, raised by a heuristic up to 32 MB) with a fresh ``mmap``
and gives it back with ``munmap`` when freed; the next step's block of the same size then
page-faults on every 4 KB page as it is first written, and the kernel zeroes each page. On a
virtual machine a page fault costs more still. PyTorch's CPU performance guide recommends
jemalloc or tcmalloc, loaded with LD_PRELOAD, for this reason; ``keep_freed_memory()`` gets the
effect inside glibc itself: ``mallopt(M_MMAP_MAX, 0)`` (every block from the heap) and a trim
threshold of 1 GB (freed memory stays for reuse, up to that much above the heap's top). The
process then holds its peak memory until ``keep_freed_memory(False)``, which sets glibc's
fixed thresholds back (mmap from 32 MB, trim at 64 MB: where glibc's own heuristic settles once
a block of 32 MB has been freed; setting either option ends that heuristic for the process)
and returns the free memory (``malloc_trim``). Measured in docs/speed.md#freed-memory-kept.

glibc only (Linux); elsewhere the functions change nothing and say so.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Iterator

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4  # glibc's mallopt parameters
KEEP_TRIM_THRESHOLD = 1 << 30  # bytes free above the heap's top before it is given back
RESTORED = {M_MMAP_MAX: 65536, M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 64 << 20}
"""The settings ``keep_freed_memory(False)`` leaves: glibc's default number of mmapped blocks,
its heuristic's ceiling for the mmap threshold, and the trim threshold it pairs with it."""

_state = {"on": False}
_lock = threading.Lock()


def _glibc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
    except (OSError, TypeError):  # TypeError: Windows, where a library must be named
        return None
    if not all(hasattr(libc, f) for f in ("gnu_get_libc_version", "mallopt", "malloc_trim")):
        return None
    return libc


def keep_freed_memory(on: bool = True) -> str:
    """Keep freed blocks in the heap for reuse (``on``), or return to glibc's fixed thresholds
    and give the free memory back (see the module docstring).

    Returns ``"glibc"`` where it took effect, ``"unsupported"`` where malloc is not glibc's.
    """
    libc = _glibc()
    if libc is None:
        return "unsupported"
    with _lock:
        if on:
            libc.mallopt(M_MMAP_MAX, 0)
            libc.mallopt(M_TRIM_THRESHOLD, KEEP_TRIM_THRESHOLD)
        else:
            for param, value in RESTORED.items():
                libc.mallopt(param, value)
            libc.malloc_trim(0)
        _state["on"] = on
    return "glibc"


def is_kept() -> bool:
    """Whether this module last turned the mode on."""
    return _state["on"]


@contextlib.contextmanager
def freed_memory_kept(on: bool = True) -> Iterator[str]:
    """``keep_freed_memory(on)`` inside the block, and after it the mode this module last set
    (off: glibc's fixed thresholds, the free memory returned); yields its result."""
    before = is_kept()
    where = keep_freed_memory(on) if on != before else ("glibc" if _glibc() else "unsupported")
    try:
        yield where
    finally:
        if where != "unsupported" and before != on:
            keep_freed_memory(before)
