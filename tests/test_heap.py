"""Freed memory kept in glibc's heap (rnnkit.heap), read off malloc's own counters (mallinfo2):
``hblkhd`` is the memory held in mmapped blocks, ``arena`` the heap's size, ``fordblks`` its free
part."""

from __future__ import annotations

import ctypes

import pytest
import torch

from probe_task import ProbeTask
from rnnkit.heap import freed_memory_kept, is_kept, keep_freed_memory
from rnnkit.train.trainer import TrainConfig, Trainer


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost"
        .split()
    ]  # fmt: skip


def _libc():
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    if not hasattr(libc, "mallinfo2") or not hasattr(libc, "gnu_get_libc_version"):
        return None
    libc.mallinfo2.restype = MallInfo2
    return libc


LIBC = _libc()
pytestmark = pytest.mark.skipif(LIBC is None, reason="malloc is not glibc's (2.33 or later)")
MB64 = 1 << 24  # floats: 64 MB, above any mmap threshold glibc uses by itself (32 MB at most)


def fresh_size() -> int:
    """Floats: 64 MB more than the heap holds free, so that no freed chunk can serve them."""
    return MB64 + LIBC.mallinfo2().fordblks // 4


def mmapped_while_alive(size: int | None = None) -> int:
    """How much more memory sits in mmapped blocks while a fresh tensor of ``size`` floats
    (default: ``fresh_size()``) is alive."""
    block_size = size or fresh_size()
    before = LIBC.mallinfo2().hblkhd
    block = torch.empty(block_size)
    grown = LIBC.mallinfo2().hblkhd - before
    del block
    return grown


@pytest.fixture(autouse=True)
def restore():
    yield
    keep_freed_memory(False)


def test_a_large_block_comes_from_the_heap_and_stays_there_for_the_next():
    assert mmapped_while_alive() >= MB64 * 4  # glibc's way: mmap, then munmap on free
    assert keep_freed_memory(True) == "glibc" and is_kept()
    size = fresh_size()
    assert mmapped_while_alive(size) == 0  # from the heap
    assert LIBC.mallinfo2().fordblks >= size * 4  # freed, and kept in the heap for the next
    assert mmapped_while_alive(size) == 0
    assert keep_freed_memory(False) == "glibc" and not is_kept()
    assert mmapped_while_alive() >= MB64 * 4  # back to mmap above 32 MB


def test_the_block_sets_back_the_mode_it_found():
    with freed_memory_kept() as where:
        assert where == "glibc" and is_kept() and mmapped_while_alive() == 0
    assert not is_kept() and mmapped_while_alive() >= MB64 * 4
    keep_freed_memory(True)
    with freed_memory_kept(False):
        assert not is_kept()
    assert is_kept()


@pytest.mark.parametrize("on", [True, False])
def test_the_trainer_keeps_freed_memory_while_it_trains(tmp_path, on):
    task = ProbeTask(mmapped_while_alive)
    cfg = TrainConfig(max_steps=3, progress=False, keep_freed_memory=on)
    Trainer(task, cfg, tmp_path, {"task": "probe"}).fit()
    assert len(task.seen) == 3
    assert all((grown == 0) == on for grown in task.seen)
    assert not is_kept() and mmapped_while_alive() >= MB64 * 4
