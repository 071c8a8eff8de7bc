"""The long-range and digits tasks: metrics, batches by position, models, and short trainings."""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

from rnnkit.config import apply_overrides
from rnnkit.errors import UserError
from rnnkit.tasks import get_task
from rnnkit.tasks.longrange import CELLS, PROBLEMS, Problem, batch_seed, metrics_from_sums, score
from rnnkit.train.trainer import Trainer

QUIET = {"train.progress": False}


def make(name: str, preset: str = "tiny", **overrides):
    spec = get_task(name)
    cfg = apply_overrides(spec.presets[preset](), {**QUIET, **overrides})
    spec.check(cfg)
    return spec, cfg, spec.build(cfg, None)


def val_loss(task) -> float:
    task.model.eval()
    with torch.no_grad():
        loss = task.metrics(task.evaluate(task.model, 0))["loss"]
    task.model.train()
    return loss


# ---- metrics -------------------------------------------------------------------------------
def problem(scoring: str, many_to_one: bool = True) -> Problem:
    return Problem(
        generate=lambda b, g: None, scoring=scoring, many_to_one=many_to_one, input_size=1,
        output_size=3, baseline=("baseline_x", 0.5), metric="mse",
    )  # fmt: skip


def test_mse_scoring_against_hand_computation():
    out, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([1.5, 2.0, 3.0])
    loss, sums = score(problem("mse"), out, y)
    assert loss.item() == pytest.approx((0.25 + 0 + 1) / 3)
    assert sums["sse"].item() == pytest.approx(1.25) and sums["n"].item() == 3
    m = metrics_from_sums(problem("mse"), {k: float(v) for k, v in sums.items()})
    assert m == {"loss": pytest.approx(1.25 / 3), "mse": pytest.approx(1.25 / 3), "baseline_x": 0.5}


def test_cross_entropy_scoring_and_accuracy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 3.0], [1.0, 2.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    loss, sums = score(problem("ce"), logits, labels)
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels))
    m = metrics_from_sums(problem("ce"), {k: float(v) for k, v in sums.items()})
    assert m["accuracy"] == pytest.approx(2 / 4)  # argmax 0, 2, 1, 0
    assert m["loss"] == pytest.approx(F.cross_entropy(logits, labels).item())


def test_copy_scoring_counts_the_recall_steps_only():
    T, B = 3, 2
    y = torch.zeros(T + 20, B, dtype=torch.long)
    y[-10:] = torch.arange(1, 11).remainder(8).add(1).unsqueeze(1)  # symbols 2..8,1,2,3
    logits = F.one_hot(y, 10).float() * 10  # right everywhere ...
    logits[-1, 0] = F.one_hot(torch.tensor(0), 10).float() * 10  # ... but one recalled symbol
    _, sums = score(problem("copy", many_to_one=False), logits, y)
    m = metrics_from_sums(
        problem("copy", many_to_one=False), {k: float(v) for k, v in sums.items()}
    )
    assert m["recall_accuracy"] == pytest.approx(19 / 20)
    assert m["accuracy"] == pytest.approx(1 - 1 / ((T + 20) * B))
    assert (
        m["ce"]
        == m["loss"]
        == pytest.approx(F.cross_entropy(logits.flatten(0, 1), y.flatten()).item())
    )


@pytest.mark.parametrize("name", list(PROBLEMS))
def test_baselines_are_logged_with_every_evaluation(name):
    _, _, task = make(name)
    metrics = val_loss(task), task.metrics(task.evaluate(task.model, 1))
    key, value = task.problem.baseline
    assert metrics[1][key] == value and task.problem.metric in metrics[1]


# ---- batches by position, resume, processes -----------------------------------------------
def test_batches_are_addressed_by_epoch_and_position():
    _, _, task = make("adding")
    a, b = task.train_batch(3), task.train_batch(3)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(task.train_batch(4)[0], a[0])
    task.start_epoch(1)
    assert not torch.equal(task.train_batch(3)[0], a[0])
    assert len({batch_seed(1, e, p) for e in range(5) for p in range(100)}) == 500
    # resume: the epoch travels in the checkpoint's carried state
    state = task.carried_state()
    _, _, fresh = make("adding")
    fresh.load_carried_state(state)
    assert torch.equal(fresh.train_batch(3)[0], task.train_batch(3)[0])


def test_processes_take_disjoint_shares_of_the_global_batch():
    spec, cfg, whole = make("copy", **{"data.batch_size": 8, "data.val_size": 10})
    parts = [spec.build(cfg, None, rank=r, world_size=2) for r in range(2)]
    xs = [p.train_batch(5)[0] for p in parts]
    assert torch.equal(torch.cat(xs, dim=1), whole.train_batch(5)[0])
    assert sum(p.val_x.shape[1] for p in parts) == 10
    with pytest.raises(UserError, match="data.batch_size"):
        spec.build(cfg, None, rank=0, world_size=3)


def test_the_validation_set_is_fixed_and_apart_from_training():
    _, _, a = make("adding")
    _, _, b = make("adding", **{"data.seed": 7})
    assert torch.equal(a.val_x, b.val_x)
    _, _, c = make("adding", **{"data.val_seed": 5})
    assert not torch.equal(a.val_x, c.val_x)


# ---- models --------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", CELLS)
def test_every_cell_builds_and_runs(cell):
    _, _, task = make("adding", **{"model.cell": cell})
    x, y = task.train_batch(0)
    loss, n = task.loss(task.model, (x, y))
    loss.backward()
    assert math.isfinite(loss.item()) and n == y.numel()


def test_irnn_starts_from_the_identity():
    _, _, task = make("adding", **{"model.cell": "irnn", "model.hidden_size": 5})
    rnn = task.model.rnn
    assert rnn.cell_options["nonlinearity"] == "relu"
    torch.testing.assert_close(rnn.weight_hh_l0.detach(), torch.eye(5))
    assert not rnn.bias_hh_l0.any() and not rnn.bias_ih_l0.any()


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_chrono_option_initialises_the_gates(cell):
    """--model.chrono_t_max T: keep-gate biases log(u), u ~ U[1, T-1] (rnnkit.layers.init)."""
    H = 16
    _, _, task = make("adding", **{"model.cell": cell, "model.hidden_size": H,
                                    "model.chrono_t_max": 20.0})  # fmt: skip
    keep = task.model.rnn.bias_ih_l0[H : 2 * H].detach()
    assert keep.min() >= 0 and keep.max() <= math.log(19) + 1e-6
    assert not task.model.rnn.bias_hh_l0[H : 2 * H].any()


def test_peephole_is_an_lstm_with_peepholes():
    _, _, task = make("adding", **{"model.cell": "peephole"})
    assert any("weight_c" in name for name, _ in task.model.named_parameters())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model.cell": "lstm", "model.nonlinearity": "relu"}, "model.nonlinearity"),
        ({"model.cell": "gru", "model.forget_bias": 1.0}, "model.forget_bias"),
        ({"model.cell": "elman", "model.chrono_t_max": 50.0}, "applies to the gated cells"),
        ({"model.chrono_t_max": 1.0}, "model.chrono_t_max' must be >= 2"),
        ({"model.chrono_t_max": 50.0, "model.forget_bias": 1.0}, "give one"),
        ({"model.chrono_t_max": 50.0, "model.bias": False}, "needs model.bias true"),
        ({"data.T": 1}, "data.T"),
        ({"data.batch_size": 0}, "data.batch_size"),
    ],
)
def test_impossible_options_are_one_line_errors(overrides, message):
    spec = get_task("adding")
    cfg = apply_overrides(spec.presets["tiny"](), overrides)
    with pytest.raises(UserError, match=message):
        spec.check(cfg)


# ---- training: the loss goes down ----------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "steps", "factor"),
    [
        ("adding", 30, 0.9),
        ("copy", 30, 0.9),
        ("running_sum", 150, 0.9),
        ("larger_total", 30, 0.9),
        ("digits", 60, 0.95),  # ten classes from 64 pixels: slower to start
    ],
)
def test_a_short_training_lowers_the_validation_loss(name, steps, factor, tmp_path):
    _, cfg, task = make(name, **{"train.max_steps": steps, "train.eval_every": steps})
    before = val_loss(task)
    result = Trainer(task, cfg.train, tmp_path, {"task": name}).fit()
    assert result["step"] == steps
    assert result["loss"] < factor * before, (before, result["loss"])
    if "baseline_accuracy" in result:
        assert result["accuracy"] > result["baseline_accuracy"] + 0.05


def test_the_one_unit_linear_elman_rnn_recovers_a(tmp_path):
    spec, cfg, task = make("running_average", "default", **{"data.a": 0.8})
    assert sum(p.numel() for p in task.model.parameters()) == 3  # w_ih, w_hh = a, w_out
    result = Trainer(task, cfg.train, tmp_path, {"task": "running_average"}).fit()
    assert abs(result["learned_a"] - 0.8) < 1e-3
    assert result["mse"] < 1e-4 * result["baseline_mse"]
    shown = re.search(r"learned a = (\S+)", task.report(result)).group(1)
    assert abs(float(shown) - 0.8) < 1e-3


# ---- digits --------------------------------------------------------------------------------
def test_digits_are_64_step_pixel_sequences_with_a_fixed_split():
    from rnnkit.tasks.digits import load_sequences, split

    x, y = load_sequences()
    assert x.shape == (64, 1797, 1) and y.shape == (1797,)
    assert x.min() >= 0 and x.max() <= 1 and set(y.tolist()) == set(range(10))
    train, val = split(0.2, 0)
    assert len(val) == 359 and len(train) + len(val) == 1797
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(split(0.2, 0)[1], val)
    _, _, task = make("digits")
    assert task.val_x.shape == (64, 359, 1)
    name, baseline = task.problem.baseline
    majority = torch.bincount(y[train]).argmax()
    assert baseline == pytest.approx((y[val] == majority).float().mean().item())


def test_resume_continues_with_the_same_batches_and_weights(tmp_path):
    steps = {"train.eval_every": 10, "train.checkpoint_every": 10, "data.epoch_batches": 7}
    _, cfg, task = make("larger_total", **steps, **{"train.max_steps": 20})
    Trainer(task, cfg.train, tmp_path / "a", {"task": "larger_total"}).fit()
    _, cfg, task = make("larger_total", **steps, **{"train.max_steps": 30})
    Trainer(task, cfg.train, tmp_path / "a", {"task": "larger_total"}, resume=True).fit()
    _, cfg, straight = make("larger_total", **steps, **{"train.max_steps": 30})
    Trainer(straight, cfg.train, tmp_path / "b", {"task": "larger_total"}).fit()
    for (name, p), q in zip(
        task.model.named_parameters(), straight.model.parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=0, atol=0, msg=name)
