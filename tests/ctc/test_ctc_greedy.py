"""greedy_decode: the collapse of the brute-force best path, batched, with lengths and blank."""

import pytest
import torch
from ctc_brute import best_path, random_log_probs

from rnnkit.ctc import collapse, greedy_decode


def test_collapse():
    assert collapse([0, 1, 1, 0, 1, 2, 2, 0], blank=0) == [1, 1, 2]
    assert collapse([2, 2, 1, 2], blank=2) == [1]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("blank", [0, 1])
def test_greedy_is_the_collapsed_best_path(seed, blank):
    T, B, C = 5, 4, 3
    lp = random_log_probs(T, B, C, seed, sharp=2.0)
    lengths = [5, 3, 0, 4]
    got = greedy_decode(lp, lengths, blank=blank)
    for b in range(B):
        path, _ = best_path(lp[: lengths[b], b])
        assert got[b] == (collapse(path, blank) if lengths[b] else [])


def test_greedy_bad_inputs():
    with pytest.raises(ValueError, match=r"lengths\[0\] = 9 is outside \[0, 2\]"):
        greedy_decode(torch.zeros(2, 1, 3), [9])
    with pytest.raises(ValueError, match="blank must be"):
        greedy_decode(torch.zeros(2, 1, 3), blank=-1)
