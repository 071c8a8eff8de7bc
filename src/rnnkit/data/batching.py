"""Batches for truncated backpropagation through time over one long token sequence.

The main job's batching (DESIGN.md): the token ids are cut into ``B`` parallel streams, each a
contiguous stretch of the corpus, and the streams are read side by side in windows of ``k``
steps. Row ``b`` of window ``i + 1`` continues row ``b`` of window ``i``, so the recurrent state
carried from one window to the next (detached) continues the same text::

    ids:      [ s0 .............. | s1 .............. | ... | s(B-1) ......... ] tail dropped
    window i:   s0[ik : ik+k]       s1[ik : ik+k]             s(B-1)[ik : ik+k]     -> x (k, B)
                s0[ik+1 : ik+k+1]   ...                                             -> y (k, B)

Distributed data parallel: the global batch is the ``B`` streams; rank ``r`` of ``W`` takes the
streams ``[r B/W, (r+1) B/W)``, so the ranks' batches, side by side, are exactly the batch a
single process sees, and the run's result does not depend on the number of processes (up to
floating-point summation order).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import Tensor

from rnnkit.errors import UserError


def _as_ids(ids: np.ndarray | Tensor | Sequence[int]) -> np.ndarray:
    if isinstance(ids, Tensor):
        ids = ids.detach().cpu().numpy()
    if not isinstance(ids, np.ndarray):  # np.memmap is an ndarray: kept as it is, not read
        ids = np.asarray(ids)
    if ids.ndim != 1:
        raise ValueError(f"token ids must be 1-D, got shape {tuple(ids.shape)}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"token ids must be integers, got dtype {ids.dtype}")
    return ids


class StreamBatcher:
    """Windows of ``bptt_len`` steps over ``batch_size`` contiguous streams of token ids.

    With ``n`` tokens, each stream has ``L = n // batch_size`` tokens (the last
    ``n % batch_size`` are dropped); stream ``b`` is ``ids[b*L : (b+1)*L]``. Its ``L - 1`` input
    positions are read in windows of ``k = bptt_len`` steps: window ``i`` has inputs
    ``x = streams[:, i*k : i*k + k]`` and targets ``y`` the tokens one step later, both
    time-major int64 tensors of shape ``(k, B_local)``; the last window may be shorter (at least
    one step). ``len(batcher) = ceil((L - 1) / k)``.

    Windows are computed on demand from slices of ``ids``: a memory-mapped array is read only
    where a window lies, never copied whole. ``window(i)`` is random access, so a resumed run
    continues at any window; iteration yields the windows in order. Training and validation
    use the same class (for validation, carry the state across its windows too).

    Args:
        ids: 1-D token ids (a numpy array, a ``np.memmap``, a tensor or a list).
        batch_size: the global number of streams ``B``, over all ranks.
        bptt_len: steps per window ``k``.
        rank: this process's rank.
        world_size: the number of processes; must divide ``batch_size``.
        name: what the ids are (e.g. "train split of corpus.txt"), for error messages.

    Raises:
        UserError: for a batch size or window length below 1, a batch size that the world size
            does not divide, or ids too few for one window of one step per stream.
    """

    def __init__(
        self,
        ids: np.ndarray | Tensor | Sequence[int],
        batch_size: int,
        bptt_len: int,
        rank: int = 0,
        world_size: int = 1,
        *,
        name: str = "data",
    ) -> None:
        for arg, value in (("batch size", batch_size), ("bptt length", bptt_len)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{arg} must be a positive integer, got {value!r}")
        if isinstance(world_size, bool) or not isinstance(world_size, int) or world_size < 1:
            raise UserError(f"world size must be a positive integer, got {world_size!r}")
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} out of range for a world size of {world_size}")
        if batch_size % world_size:
            raise UserError(
                f"batch size {batch_size} is not divisible by the world size {world_size}: "
                "each process takes an equal share of the streams"
            )
        self.ids = _as_ids(ids)
        n = len(self.ids)
        stream_len = n // batch_size
        if stream_len < 2:
            raise UserError(
                f"{name}: {n} tokens are too few for {batch_size} streams: each stream needs at "
                f"least 2 tokens (an input and its next-token target), so at least "
                f"{2 * batch_size} tokens; use a smaller batch size or more data"
            )
        self.name = name
        self.batch_size = batch_size
        self.bptt_len = bptt_len
        self.rank = rank
        self.world_size = world_size
        self.stream_len = stream_len
        self.local_batch_size = batch_size // world_size
        self._rows = slice(rank * self.local_batch_size, (rank + 1) * self.local_batch_size)
        # (B, L) view of the streams: a view, for memmaps too, so nothing is read here.
        self._streams = self.ids[: batch_size * stream_len].reshape(batch_size, stream_len)
        self._n_windows = -(-(stream_len - 1) // bptt_len)

    def __len__(self) -> int:
        """The number of windows in an epoch."""
        return self._n_windows

    @property
    def tokens_per_epoch(self) -> int:
        """Target tokens this rank sees in an epoch: ``(L - 1) * B_local``."""
        return (self.stream_len - 1) * self.local_batch_size

    def window_len(self, i: int) -> int:
        """The number of steps of window ``i`` (``bptt_len``, or fewer for the last one)."""
        self._check_index(i)
        return min(self.bptt_len, self.stream_len - 1 - i * self.bptt_len)

    def _check_index(self, i: int) -> None:
        if not 0 <= i < self._n_windows:
            raise IndexError(f"window {i} out of range: {self._n_windows} windows per epoch")

    def window(self, i: int) -> tuple[Tensor, Tensor]:
        """Window ``i``: inputs and targets.

        Args:
            i: the window's index, ``0 <= i < len(self)``.

        Returns:
            (x, y): int64 tensors of shape ``(k_i, B_local)``, time-major; ``y[t]`` is the
            token after ``x[t]`` in each stream.
        """
        self._check_index(i)
        start = i * self.bptt_len
        stop = min(start + self.bptt_len, self.stream_len - 1) + 1
        # Only this (B_local, k+1) block of the streams is read.
        block = np.asarray(self._streams[self._rows, start:stop])
        tm = np.ascontiguousarray(block.T, dtype=np.int64)  # (k + 1, B_local)
        return torch.from_numpy(tm[:-1].copy()), torch.from_numpy(tm[1:].copy())

    def windows(self, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        """The windows from ``start`` to the end of the epoch, in order.

        Args:
            start: the first window (e.g. where a resumed run left off).

        Returns:
            An iterator of ``(x, y)`` as from ``window``.
        """
        for i in range(start, self._n_windows):
            yield self.window(i)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        return self.windows()

    def __repr__(self) -> str:
        return (
            f"StreamBatcher({self.name}: {len(self.ids)} tokens, batch_size={self.batch_size}, "
            f"bptt_len={self.bptt_len}, rank={self.rank}/{self.world_size}, "
            f"{len(self)} windows)"
        )
