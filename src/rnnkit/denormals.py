"""Denormal floats flushed to zero on every thread that computes, not only the calling one.

A recurrent network's gradients shrink step by step as they flow back through time (the
vanishing gradient): over a long sequence they pass below float32's smallest normal number,
1.2e-38, and become denormal (subnormal). Many x86 CPUs, Intel's among them, take a microcode
assist on every operation with a denormal operand or result, tens to hundreds of cycles instead
of one; a training step whose backward pass is full of them runs several times slower
(docs/speed.md#denormal-floats). Flushing
denormals to zero (the CPU's flush-to-zero and denormals-are-zero modes, MXCSR's FTZ and DAZ on
x86, FPCR's FZ on ARM) replaces those values by 0: a gradient component below 1e-38 moves no
weight a representable amount at any learning rate, so the training is the same.

``torch.set_flush_denormal`` sets the mode only for the thread that calls it; torch's intra-op
threads (an OpenMP team on Linux builds) keep theirs, and each computes a share of every large
operation. ``flush_denormals(on)`` sets it on the calling thread and, through the OpenMP runtime
torch is linked with (``GOMP_parallel`` of libgomp, called through ctypes with a callback that
calls ``torch.set_flush_denormal`` on each thread of the team; torch's own copy of libgomp, not
another package's), on every thread of the calling thread's intra-op pool. Threads created later
are created by the calling thread and inherit its mode. Where libgomp is not what torch uses
(other platforms and builds), only the calling thread is set, and the function says so in its
result.

The mode affects float64 too (below 2.2e-308), which is why ``rnnkit train`` turns it on only
for the training run and back off after (``flushed``), and why tests in float64 keep it off.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import torch

_CALLBACK = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_state = {"on": False}  # what this module last set (torch has no getter for the mode)
_lock = threading.Lock()


def _libgomp() -> ctypes.CDLL | None:
    """The libgomp torch runs its threads on, or None (another OpenMP runtime, or none).

    Other packages bring their own copy (scikit-learn's wheels do), each with its own threads:
    the one in torch's own lib directory is taken, else the only one loaded, else none."""
    if not torch.backends.openmp.is_available():
        return None
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "libgomp" in line and "/" in line}
    except OSError:
        return None
    torch_lib = Path(torch.__file__).resolve().parent / "lib"
    ours = [p for p in paths if Path(p).resolve().parent == torch_lib]
    chosen = ours or (list(paths) if len(paths) == 1 else [])
    if len(chosen) != 1:
        return None
    try:
        lib = ctypes.CDLL(chosen[0])  # already loaded: the same handle, no second runtime
    except OSError:
        return None
    return lib if hasattr(lib, "GOMP_parallel") else None


def _set_on_team(on: bool) -> int:
    """Call ``torch.set_flush_denormal(on)`` on each thread of an OpenMP team of the calling
    thread's; returns how many threads ran it (0: no libgomp).

    The team has as many threads as torch uses or the machine has CPUs, whichever is more:
    libgomp keeps a master's idle threads in a pool and reuses them, so a thread left over from a
    larger team (torch set to 2 threads, then 1, then 2 again) must be reached too."""
    lib = _libgomp()
    if lib is None:
        return 0
    ran = []

    def each_thread(_data) -> None:
        torch.set_flush_denormal(on)
        ran.append(threading.get_ident())

    callback = _CALLBACK(each_thread)  # kept alive until GOMP_parallel returns
    lib.GOMP_parallel.argtypes = [_CALLBACK, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    lib.GOMP_parallel.restype = None
    team = max(1, torch.get_num_threads(), os.cpu_count() or 1)
    lib.GOMP_parallel(callback, None, team, 0)
    return len(set(ran))


def flush_denormals(on: bool = True) -> str:
    """Flush denormal floats to zero (``on``) or keep them (IEEE's default), on the calling
    thread and on torch's intra-op threads (see the module docstring).

    Returns where it took effect: ``"all threads"`` (the calling thread and its intra-op team),
    ``"this thread"`` (no libgomp to reach the others: with one intra-op thread, that is all),
    or ``"unsupported"`` (the CPU has no such mode; nothing changed).
    """
    with _lock:
        if not torch.set_flush_denormal(on):
            return "unsupported"
        _state["on"] = on
        if _set_on_team(on) == 0:
            return "this thread"
        return "all threads"


def is_flushed() -> bool:
    """Whether this module last turned the mode on (torch offers no way to read it)."""
    return _state["on"]


@contextlib.contextmanager
def flushed(on: bool = True) -> Iterator[str]:
    """``flush_denormals(on)`` inside the block and the previous mode (as this module last
    set it) after; yields ``flush_denormals``'s result."""
    before = is_flushed()
    where = flush_denormals(on)
    try:
        yield where
    finally:
        if where != "unsupported" and before != on:
            flush_denormals(before)
