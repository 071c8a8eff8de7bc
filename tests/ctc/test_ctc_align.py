"""forced_align: the brute-force best path among the paths that collapse to the target."""

import pytest
import torch
from ctc_brute import best_path, random_log_probs

from rnnkit.ctc import collapse, forced_align


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(
    "target, blank", [([1, 2], 0), ([1, 1], 0), ([2, 1, 2], 0), ([0, 0, 2], 1), ([], 0)]
)
def test_single_item_equals_brute_force(seed, target, blank):
    lp = random_log_probs(6, 1, 3, seed)[:, 0]
    path = forced_align(lp, target, blank=blank)
    want, _ = best_path(lp, target, blank)
    assert path == want
    assert collapse(path, blank) == target


def test_batched_with_lengths_and_padded_targets():
    lp = random_log_probs(7, 3, 4, 11)
    targets = [[1, 2, 3], [3, 3], [2]]
    lengths = [7, 4, 2]
    paths = forced_align(lp, targets, lengths=lengths)
    padded = torch.tensor([[1, 2, 3], [3, 3, 0], [2, 0, 0]])
    again = forced_align(lp, padded, lengths=lengths, target_lengths=[3, 2, 1])
    assert paths == again
    for b in range(3):
        want, _ = best_path(lp[: lengths[b], b], targets[b])
        assert paths[b] == want and len(paths[b]) == lengths[b]


def test_impossible_targets_are_one_line_errors():
    lp = random_log_probs(3, 1, 3, 0)[:, 0]
    with pytest.raises(ValueError, match=r"targets needs 4 frames .* but has 3"):
        forced_align(lp, [1, 1, 2])
    with pytest.raises(ValueError, match=r"targets\[0\]\[0\] = 0 is the blank"):
        forced_align(lp, [0])
    with pytest.raises(ValueError, match="lengths are for the batched form"):
        forced_align(lp, [1], lengths=[3])
