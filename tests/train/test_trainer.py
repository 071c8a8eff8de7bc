"""The trainer on a task that is not a language model: it knows nothing of text."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from rnnkit.train.trainer import TrainConfig, Trainer, learning_rate


class SumTask:
    """Many-to-one regression: an Elman RNN learns the sum of its inputs (the lectures' toy)."""

    def __init__(self) -> None:
        import rnnkit

        torch.manual_seed(0)
        self.model = nn.ModuleDict({"rnn": rnnkit.RNN(1, 8), "head": nn.Linear(8, 1)})
        g = torch.Generator().manual_seed(1)
        self.xs = torch.rand(10, 20, 64, 1, generator=g)  # 10 batches of (T=20, B=64, 1)

    def to(self, device):
        pass

    def num_train_batches(self):
        return 9

    def start_epoch(self, epoch):
        pass

    def train_batch(self, position):
        return self.xs[position]

    def _loss(self, model, xs, reduction="mean"):
        ys, _ = model["rnn"](xs)
        return nn.functional.mse_loss(model["head"](ys[-1]), xs.sum(0), reduction=reduction)

    def loss(self, model, batch):
        return self._loss(model, batch), batch.shape[1]

    def evaluate(self, model, max_batches):
        return {"sse": float(self._loss(model, self.xs[9], "sum")), "n": 64}

    def metrics(self, sums):
        return {"loss": sums["sse"] / sums["n"]}

    def carried_state(self):
        return {}

    def load_carried_state(self, tensors):
        pass


def fit(tmp_path, **options):
    cfg = TrainConfig(progress=False, eval_every=10, checkpoint_every=10, log_every=5, **options)
    trainer = Trainer(SumTask(), cfg, tmp_path, {"task": "sum"})
    return trainer, trainer.fit()


def test_a_task_that_is_not_text_trains(tmp_path):
    trainer, result = fit(tmp_path, max_steps=200, lr=1e-2, warmup_steps=10)
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    val = [r["loss"] for r in records if r["split"] == "val"]
    assert val[-1] < 0.05 * val[0]
    assert result["loss"] == val[-1] and result["step"] == 200
    assert (tmp_path / "best.safetensors").exists() and (tmp_path / "last.safetensors").exists()


def test_early_stopping_when_validation_stops_improving(tmp_path):
    # lr 0: nothing changes, so after the first evaluation none improves
    _, result = fit(tmp_path, max_steps=1000, lr=0.0, warmup_steps=0, patience=3)
    assert result["stopped_early"] and result["step"] == 40


class ScoredSumTask(SumTask):
    """The same task with a score that gets worse as the loss falls, chosen to pick the best
    checkpoint: the kept checkpoint follows the score, not the loss."""

    selection = ("score", "max")

    def metrics(self, sums):
        loss = sums["sse"] / sums["n"]
        return {"loss": loss, "score": loss}  # higher is better: the worst-loss evaluation


def test_best_checkpoint_follows_the_tasks_selection_metric(tmp_path):
    from rnnkit.train.checkpoint import load_checkpoint

    cfg = TrainConfig(progress=False, eval_every=10, checkpoint_every=10, log_every=5,
                      max_steps=60, lr=1e-2, warmup_steps=0)  # fmt: skip
    result = Trainer(ScoredSumTask(), cfg, tmp_path, {"task": "sum"}).fit()
    val = [json.loads(x) for x in (tmp_path / "log.jsonl").read_text().splitlines()]
    val = [r for r in val if r["split"] == "val"]
    top = max(val, key=lambda r: r["score"])
    assert top["step"] < val[-1]["step"] and top["loss"] > val[-1]["loss"]
    assert result["best_metric"] == "score" and result["best"] == top["score"]
    kept = load_checkpoint(tmp_path / "best.safetensors").meta["trainer"]
    assert kept["step"] == top["step"] and kept["best_metric"] == "score"


def test_resume_under_another_selection_metric_starts_the_best_over(tmp_path):
    """A run kept best-by-loss, resumed by a task that selects by score: the stored loss is
    not compared with scores; the first evaluation after the resume becomes the best."""
    from rnnkit.train.checkpoint import load_checkpoint

    options = dict(progress=False, eval_every=10, checkpoint_every=10, log_every=5, lr=1e-2,
                   warmup_steps=0)  # fmt: skip
    Trainer(SumTask(), TrainConfig(max_steps=20, **options), tmp_path, {"task": "sum"}).fit()
    assert load_checkpoint(tmp_path / "best.safetensors").meta["trainer"]["best_metric"] == "loss"
    cfg = TrainConfig(max_steps=30, **options)
    result = Trainer(ScoredSumTask(), cfg, tmp_path, {"task": "sum"}, resume=True).fit()
    kept = load_checkpoint(tmp_path / "best.safetensors").meta["trainer"]
    assert kept["best_metric"] == "score" and kept["step"] == 30
    assert result["best_metric"] == "score" and result["best"] == result["score"]


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_other_optimisers_and_clipping_by_value(tmp_path, optimizer):
    trainer, result = fit(tmp_path, max_steps=30, optimizer=optimizer, clip_value=0.01, lr=1e-2)
    assert isinstance(
        trainer.optimizer, torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    )
    assert math.isfinite(result["loss"])


def test_learning_rate_schedules():
    cfg = TrainConfig(lr=1.0, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    assert learning_rate(cfg, 0) == pytest.approx(0.1) and learning_rate(cfg, 9) == 1.0
    assert learning_rate(cfg, 60) == pytest.approx(0.55)  # cosine half-way: the mean
    assert learning_rate(cfg, 110) == pytest.approx(0.1)
    cfg.schedule = "linear"
    assert learning_rate(cfg, 60) == pytest.approx(0.55)
    cfg.schedule = "constant"
    assert learning_rate(cfg, 100) == 1.0


# ---- --train.ema: the weight average --------------------------------------------------------
def test_the_weight_average_follows_its_recursion_and_leaves_the_weights_alone():
    from rnnkit.train.ema import WeightAverage

    model = nn.Linear(3, 2)
    average = WeightAverage(model, 0.9)
    expected = model.weight.detach().clone().double()
    for n in range(1, 30):
        with torch.no_grad():
            model.weight.add_(torch.randn_like(model.weight))
        average.update(model)
        d = min(0.9, (1 + n) / (10 + n))
        expected = d * expected + (1 - d) * model.weight.detach().double()
    torch.testing.assert_close(average.average["weight"].double(), expected)
    own = model.weight.detach().clone()
    with average.applied(model):
        assert torch.equal(model.weight, average.average["weight"])
    assert torch.equal(model.weight, own)
    with pytest.raises(ValueError, match="decay"):
        WeightAverage(model, 1.0)


def test_ema_is_what_is_evaluated_and_kept_as_best_and_resumes_exactly(tmp_path):
    from rnnkit.train.checkpoint import load_checkpoint

    options = dict(progress=False, eval_every=10, checkpoint_every=10, log_every=5, lr=1e-2,
                   warmup_steps=0, schedule="constant", ema=0.95)  # fmt: skip
    trainer = Trainer(
        SumTask(), TrainConfig(max_steps=40, **options), tmp_path / "a", {"task": "s"}
    )
    result = trainer.fit()
    with trainer.average.applied(trainer.model):
        averaged = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        assert result["loss"] == trainer.evaluate()["loss"]  # the logged loss is the average's
    assert not torch.equal(averaged["rnn.weight_hh_l0"], trainer.model.rnn.weight_hh_l0)
    best = load_checkpoint(tmp_path / "a" / "best.safetensors")
    assert best.meta["trainer"]["step"] == 40  # still improving: the best is the last
    for k, v in best.model_state.items():
        assert torch.equal(v, averaged[k]), k
    # 20 steps, then resumed to 40: the same weights and the same average as in one go
    Trainer(SumTask(), TrainConfig(max_steps=20, **options), tmp_path / "b", {"task": "s"}).fit()
    again = Trainer(
        SumTask(), TrainConfig(max_steps=40, **options), tmp_path / "b", {"task": "s"}, resume=True
    )
    again.fit()
    assert again.average.updates == trainer.average.updates == 40
    for k in trainer.average.average:
        assert torch.equal(again.average.average[k], trainer.average.average[k]), k
    for k, v in trainer.model.state_dict().items():
        assert torch.equal(again.model.state_dict()[k], v), k


def test_ema_out_of_range_is_one_line():
    from rnnkit.errors import UserError
    from rnnkit.train.train_config import check_train_config

    with pytest.raises(UserError, match="'train.ema'"):
        check_train_config(TrainConfig(ema=1.0))
