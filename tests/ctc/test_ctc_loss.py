"""ctc_loss: equal to -log of a brute-force sum over all alignments; one-line ValueErrors for
impossible inputs (too short an input, lengths out of range, the blank as a label, shapes)."""

import math

import pytest
import torch
from ctc_brute import label_log_probs, random_log_probs

from rnnkit.ctc import ctc_loss


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("blank", [0, 2])
def test_loss_equals_brute_force_sum_over_alignments(seed, blank):
    T, B, C = 5, 3, 3
    lp = random_log_probs(T, B, C, seed)
    labels = [k for k in range(C) if k != blank]
    a, b = labels
    targets = [[a, b], [a, a], [b, a, b]]
    lengths = [5, 4, 5]
    loss = ctc_loss(lp, targets, lengths, blank=blank, reduction="none")
    for i in range(B):
        table = label_log_probs(lp[: lengths[i], i], blank)
        assert loss[i].item() == pytest.approx(-table[tuple(targets[i])], abs=1e-9)


def test_layouts_and_reductions_agree_with_torch():
    lp = random_log_probs(6, 2, 4, 7).float().requires_grad_()
    targets = [[1, 2, 2], [3]]
    padded = torch.tensor([[1, 2, 2], [3, 0, 0]])
    concat = torch.tensor([1, 2, 2, 3])
    lens = torch.tensor([3, 1])
    ref = torch.nn.functional.ctc_loss(lp, padded, torch.tensor([6, 5]), lens, reduction="none")
    for t, tl in ((targets, None), (padded, lens), (concat, lens)):
        got = ctc_loss(lp, t, [6, 5], tl, reduction="none")
        torch.testing.assert_close(got, ref)
    assert ctc_loss(lp, targets, [6, 5], reduction="sum").item() == pytest.approx(ref.sum().item())
    mean = (ref / lens).mean().item()
    loss = ctc_loss(lp, targets, [6, 5])
    assert loss.item() == pytest.approx(mean, rel=1e-6)
    loss.backward()
    assert torch.isfinite(lp.grad).all() and lp.grad.abs().sum() > 0


def test_empty_target_is_the_all_blank_path():
    lp = random_log_probs(4, 1, 3, 1)
    loss = ctc_loss(lp, [[]], reduction="none")
    assert loss.item() == pytest.approx(-lp[:, 0, 0].sum().item())


def test_repeats_need_a_blank_between_them():
    lp = random_log_probs(3, 1, 3, 2)
    assert math.isfinite(ctc_loss(lp, [[1, 2, 1]]).item())  # 3 labels, no repeat: 3 frames
    with pytest.raises(ValueError, match=r"targets\[0\] needs 4 frames .*input_lengths\[0\] = 3"):
        ctc_loss(lp, [[1, 1, 2]])
    z = ctc_loss(lp, [[1, 1, 2]], zero_infinity=True, reduction="none")
    assert z.item() == 0.0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(targets=[[1, 0]]), r"targets\[0\]\[1\] = 0 is the blank"),
        (dict(targets=[[1, 5]]), r"targets\[0\]\[1\] = 5 is outside \[0, 3\)"),
        (dict(targets=[[1]], input_lengths=[7]), r"input_lengths\[0\] = 7 is outside \[0, 4\]"),
        (dict(targets=[[1]], input_lengths=[-1]), r"input_lengths\[0\] = -1"),
        (dict(targets=[[1]], input_lengths=[1, 2]), r"input_lengths must have shape \(1,\)"),
        (dict(targets=[[1]], blank=3), r"blank must be an integer in \[0, 3\)"),
        (dict(targets=[[1], [2]]), r"one label list per batch item \(1\)"),
        (dict(targets=torch.tensor([[1.0]])), "targets must hold integer labels"),
        (dict(targets=torch.tensor([1, 2]), target_lengths=[1]), "must sum to len"),
        (dict(targets=[[1]], reduction="avg"), "reduction must be one of"),
    ],
)
def test_bad_inputs_are_one_line_value_errors(kwargs, match):
    lp = random_log_probs(4, 1, 3, 0)
    with pytest.raises(ValueError, match=match) as e:
        ctc_loss(lp, **kwargs)
    assert "\n" not in str(e.value)


def test_bad_log_probs():
    with pytest.raises(ValueError, match=r"shape \(T, B, C\)"):
        ctc_loss(torch.zeros(4, 3), [[1]])
    with pytest.raises(ValueError, match="floating"):
        ctc_loss(torch.zeros(4, 1, 3, dtype=torch.long), [[1]])
    with pytest.raises(TypeError, match="torch.Tensor"):
        ctc_loss([[[0.0]]], [[1]])
