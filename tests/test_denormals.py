"""Denormals flushed to zero on every intra-op thread (rnnkit.denormals), and the trainer's use.

The probe: 1e-30 * 1e-10 = 1e-40 is a float32 denormal; flushed, it is 0. A multiply over 2^20
elements at two threads is split between the threads, so a thread left out shows as a share of
the results that stays non-zero.
"""

from __future__ import annotations

import sys

import pytest
import torch

from probe_task import ProbeTask
from rnnkit.denormals import flush_denormals, flushed, is_flushed
from rnnkit.train.trainer import TrainConfig, Trainer

N = 1 << 20
EVERYWHERE = "all threads" if sys.platform == "linux" else "this thread"
"""Where the mode reaches: torch's Linux builds run their intra-op threads on libgomp."""

pytestmark = pytest.mark.skipif(
    not torch.set_flush_denormal(False), reason="this CPU has no flush-to-zero mode"
)


def flushed_share() -> float:
    """The share of a parallel multiply's denormal results that came out as 0."""
    x = torch.full((N,), 1e-30)
    return float(((x * 1e-10) == 0).float().mean())


@pytest.fixture
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    flush_denormals(False)
    torch.set_num_threads(before)


def test_every_thread_flushes_where_torch_alone_sets_only_the_calling_one(two_threads):
    flushed_share()  # the intra-op team exists before the mode is set
    assert flushed_share() == 0.0  # IEEE's default: denormals kept
    torch.set_flush_denormal(True)  # torch's own switch reaches the calling thread only
    partial = flushed_share()
    assert 0.0 < partial < 1.0
    assert flush_denormals(True) == EVERYWHERE
    if EVERYWHERE == "all threads":
        assert flushed_share() == 1.0
    assert flush_denormals(False) != "unsupported"
    assert flushed_share() == 0.0


def test_a_thread_left_over_from_a_larger_team_is_reached(two_threads):
    flushed_share()  # the second thread exists
    torch.set_num_threads(1)
    assert flush_denormals(True) == EVERYWHERE  # set while torch uses one thread
    torch.set_num_threads(2)  # the pool's idle thread comes back
    if EVERYWHERE == "all threads":
        assert flushed_share() == 1.0


def test_torchs_openmp_runtime_is_reached_beside_another_packages_copy(two_threads):
    """scikit-learn's wheels bring a second libgomp, with threads of its own: the flush must
    reach torch's."""
    import sklearn.cluster  # noqa: F401  (loads scikit-learn's OpenMP runtime)

    with open("/proc/self/maps") as maps:
        loaded = {line.split()[-1] for line in maps if "libgomp" in line}
    if sys.platform == "linux":
        assert len(loaded) >= 2  # the situation under test
    flushed_share()
    assert flush_denormals(True) == EVERYWHERE
    if EVERYWHERE == "all threads":
        assert flushed_share() == 1.0


def test_the_block_restores_the_mode_it_found(two_threads):
    with flushed() as where:
        assert where != "unsupported" and is_flushed()
        assert flushed_share() > 0.0
    assert not is_flushed() and flushed_share() == 0.0
    flush_denormals(True)
    with flushed(False):
        assert flushed_share() == 0.0
    assert is_flushed() and flushed_share() > 0.0


@pytest.mark.parametrize("on", [True, False])
def test_the_trainer_flushes_while_it_trains_and_restores_after(tmp_path, two_threads, on):
    task = ProbeTask(flushed_share)
    cfg = TrainConfig(max_steps=3, progress=False, threads=2, flush_denormals=on)
    Trainer(task, cfg, tmp_path, {"task": "probe"}).fit()
    assert task.seen and all(share == (1.0 if on else 0.0) for share in task.seen)
    assert not is_flushed() and flushed_share() == 0.0
