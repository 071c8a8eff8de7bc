"""Scheduled sampling's per-sequence choice, shared by Seq2Seq and the lab."""

import torch

from rnnkit.scheduled_sampling import feed_back


def test_feed_back_takes_whole_rows_with_probability_eps():
    true, own = torch.zeros(4000, 3), torch.ones(4000, 3)
    assert feed_back(true, own, 1.0) is true and feed_back(true, own, 0.0) is own
    mixed = feed_back(true, own, 0.3, torch.Generator().manual_seed(0))
    rows = mixed[:, 0]
    assert (mixed == rows[:, None]).all()  # a row is all true or all own
    assert abs(float((rows == 0).float().mean()) - 0.3) < 0.03
    again = feed_back(true, own, 0.3, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again)
    tokens = feed_back(torch.arange(5), torch.arange(5) + 10, 0.5, torch.Generator())
    assert all(int(t) in (i, i + 10) for i, t in enumerate(tokens))
