"""The caption task: scenes and their captions (every phrasing parses back to its scene), the
fixed held-out splits, the gated attention and the doubly stochastic penalty (weights sum to 1,
gradcheck in float64), the scene scores, training through the command line (the loss goes
down), predict with the attention over the image, eval on both held-out splits, bad input."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from rnnkit.attention import AdditiveAttention, GatedAttention, doubly_stochastic_penalty
from rnnkit.cli import main
from rnnkit.tasks import caption_data as D
from rnnkit.tasks.caption_task import bleu_sums, scene_metrics, scene_sums, score
from user_errors import one_line_error

QUIET = ["--train.progress", "false"]


@pytest.fixture(scope="module")
def pools():
    return D.pools(None, 500, 0)


# ---- scenes and captions -----------------------------------------------------------------------
def test_every_phrasing_of_every_scene_parses_back_to_its_scene(pools):
    seen = set()
    for split in D.SPLITS:
        for i in range(60):
            scene = D.make_scene(split, i, 1, pools[split])
            assert D.MIN_ITEMS <= len(scene.items) <= D.MAX_ITEMS
            assert scene.caption in D.phrasings(scene.items)
            for text in D.phrasings(scene.items):
                assert D.parse(text) == list(scene.items), text
                seen |= {w for w in ("below it", "to its right", "there is") if w in text}
    assert seen == {"below it", "to its right", "there is"}  # every kind of phrase was made


def test_a_caption_reads_as_the_issue_says():
    items = ((7, 0), (8, 3), (3, 5))  # a sneaker top left, a bag below it, a dress right
    assert D.caption(items, "list", relative=True) == (
        "a sneaker in the top left , a bag below it and a dress on the right"
    )
    assert D.caption(items, "fronted", relative=False) == (
        "in the top left a sneaker , on the left a bag and on the right a dress"
    )


def test_parse_skips_what_it_cannot_read():
    assert D.parse("") == [] and D.parse("a a a , , and") == []
    assert D.parse("a bag below it and a coat in the centre") == [(4, 4)]  # below nothing
    assert D.parse("a boot at the bottom , a bag to its right") == [(9, 7), (8, 8)]
    assert D.parse("a bag in the bottom right , a coat to its right") == [(8, 8)]  # off the grid


def test_scenes_are_fixed_and_the_held_out_pairs_stay_out_of_training(pools):
    a, b = (D.make_scene("test", 5, 2, pools["test"]) for _ in range(2))
    assert torch.equal(a.image, b.image) and a.items == b.items and a.caption == b.caption
    assert a.image.shape == (84, 84) and a.image.dtype == torch.uint8 and a.image.max() > 100
    assert pools["test"][0].shape[0] == 10_000  # held-out scenes: the test images only
    for split in ("train", "val", "test"):
        for i in range(100):
            assert not set(D.make_scene(split, i, 1, pools[split]).items) & D.HELD_OUT
    for i in range(50):
        assert set(D.make_scene("compositional", i, 1, pools["test"]).items) & D.HELD_OUT
    assert len({item for item, _ in D.HELD_OUT}) == len(D.ITEMS)  # one pair per kind


# ---- the attention -----------------------------------------------------------------------------
def test_gated_attention_weights_sum_to_one_over_the_grid_and_gradcheck():
    torch.manual_seed(0)
    gated = GatedAttention(AdditiveAttention(5, 4, 3), 5).double()
    q, m = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 9, 4, dtype=torch.float64)
    c, alpha = gated(q, m, None)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(2, dtype=torch.float64))
    plain, alpha0 = gated.inner(q, m, None)
    beta = torch.sigmoid(gated.gate(q))
    torch.testing.assert_close(alpha, alpha0)
    torch.testing.assert_close(c, beta * plain)  # c' = β c, 0 < β < 1
    params = {k: v.detach().clone().requires_grad_() for k, v in gated.named_parameters()}

    def f(q, m, *values):
        state = dict(zip(params, values, strict=True))
        return torch.func.functional_call(gated, state, (q, m, None))

    inputs = (q.requires_grad_(), m.requires_grad_(), *params.values())
    assert torch.autograd.gradcheck(f, inputs)


def test_gated_location_attention_steps_as_the_teacher_forced_forward():
    """--model.attention location in the caption model: the gated wrapper passes the previous
    weights on, and stepping gives the teacher-forced forward's logits."""
    from rnnkit.tasks.caption_model import CaptionModel, CaptionModelConfig

    torch.manual_seed(0)
    model = CaptionModel(20, CaptionModelConfig(attention="location")).eval()
    images, words = torch.rand(2, 1, 84, 84), torch.randint(4, 20, (5, 2))
    with torch.no_grad():
        logits, alpha = model(images, words)
        state = model.encode(images)
        for t in range(5):
            step_logits, state = model.step(words[t], state)
            torch.testing.assert_close(step_logits, logits[t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(state.previous, alpha[t])


def test_the_doubly_stochastic_penalty_is_its_formula_and_gradchecks():
    alpha = torch.rand(4, 3, 6, dtype=torch.float64).softmax(-1)  # (T, B, S)
    steps = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 0, 0]], dtype=torch.bool)
    by_hand = [
        sum(
            (1 - sum(float(alpha[t, b, i]) for t in range(4) if steps[t, b])) ** 2 for i in range(6)
        )
        for b in range(3)
    ]
    got = doubly_stochastic_penalty(alpha, steps)
    torch.testing.assert_close(got, torch.tensor(by_hand, dtype=torch.float64))
    assert torch.autograd.gradcheck(
        lambda a: doubly_stochastic_penalty(a, steps), (alpha.requires_grad_(),)
    )


# ---- scores ------------------------------------------------------------------------------------
def test_scene_scores_count_the_pairs(pools):
    scenes = [D.make_scene("test", i, 1, pools["test"]) for i in range(3)]
    perfect = [s.caption for s in scenes]
    assert scene_metrics(scene_sums(perfect, scenes))["f1"] == 1.0
    first = scenes[0]
    item, cell = first.items[0]
    wrong = D.caption(((item, (cell + 1) % 9), *first.items[1:]), "list", False)
    m = scene_metrics(scene_sums([wrong], [first]))
    n = len(first.items)
    assert m["precision"] == pytest.approx((n - 1) / n) and m["recall"] == pytest.approx(
        (n - 1) / n
    )
    assert m["scenes_exact"] == 0.0
    assert scene_metrics(scene_sums(["nothing"], [first])) == {
        "precision": 0.0,
        "recall": 0.0,
        "f1": 0.0,
        "scenes_exact": 0.0,
    }
    # BLEU-4 against every phrasing: any one of them scores 100
    other = [D.phrasings(s.items)[4] for s in scenes]
    assert score(other, scenes)["bleu"] == pytest.approx(100.0)
    assert bleu_sums(other, scenes)["ref_len"] > 0
    assert set(score(perfect, scenes)["by_items"]) <= {"2", "3", "4"}


# ---- a trained run -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("caption") / "run"
    assert main(["train", "caption", "--preset", "tiny", "--out", str(out), *QUIET]) == 0
    return out


def test_training_through_the_command_line_lowers_the_loss(run):
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert sum(train[-2:]) / 2 < 0.8 * sum(train[:2]) / 2, train
    assert val[-1]["loss"] < 0.8 * math.log(len(D.words()) + 4)  # a uniform guess's loss
    assert {"bleu", "precision", "recall", "f1"} <= set(val[-1])


def test_predict_a_scene_with_its_attention_over_the_image(run, tmp_path, capsys):
    scene = tmp_path / "scene.png"
    assert main(["caption-scene", "--out", str(scene), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    truth = D.make_scene("test", 3, 2_000_003, D.load_split(None, "test"))
    assert truth.caption in printed
    with Image.open(scene) as picture:
        assert picture.size == (84, 84)
    figure = tmp_path / "attention.png"
    assert main(["predict", str(run), str(scene), "test:3", "--attention", str(figure)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"{scene}\t") and lines[2].startswith("test:3\t")
    assert lines[0].split("\t")[1] == lines[2].split("\t")[1].split("  (true:")[0]  # same image
    for name in ("attention_1.png", "attention_2.png"):
        with Image.open(tmp_path / name) as picture:
            assert picture.size[0] > 300
    from rnnkit.tasks.caption_commands import attention_weights
    from rnnkit.tasks.runs import load_run

    loaded = load_run(run, None)
    words, alpha = attention_weights(loaded, D.read_scene(scene), "a bag in the centre")
    assert words[-1] == "<eos>" and alpha.shape == (len(words), 7, 7)
    torch.testing.assert_close(alpha.sum((1, 2)), torch.ones(len(words)))  # over the grid


def test_eval_scores_both_held_out_splits(run, capsys):
    assert main(["eval", str(run), "--limit", "24", "--beam", "2"]) == 0
    out = capsys.readouterr().out
    assert "caption test: 24 scenes, beam2: BLEU-4" in out and "caption compositional" in out
    result = json.loads((run / "eval_beam2.json").read_text())
    for split in ("test", "compositional"):
        r = result[split]
        assert r["scenes"] == 24 and 0 <= r["f1"] <= 1 and 0 <= r["bleu"] <= 100
        assert sum(b["scenes"] for b in r["by_items"].values()) == 24
    assert (run / "eval_beam2.png").stat().st_size > 1000


def test_bad_pictures_are_one_line(run, tmp_path, capsys):
    small = tmp_path / "small.png"
    Image.new("L", (28, 28)).save(small)
    one_line_error(lambda: D.read_scene(small), str(small), "28x28", "84x84")
    text = tmp_path / "notes.png"
    text.write_text("not a picture\n")
    one_line_error(lambda: D.read_scene(text), str(text), "not a picture")
    one_line_error(lambda: D.read_scene(tmp_path / "none.png"), "no such file")
    for bad in (small, text):
        assert main(["predict", str(run), str(bad)]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(bad) in err


def test_the_vector_to_sequence_model_trains_and_has_no_attention_to_draw(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "caption", "--preset", "tiny", "--out", str(out), "--dry-run", *QUIET]
    assert main([*args, "--model.attention", "none", "--model.context", "both"]) == 0
    capsys.readouterr()
    assert main(["predict", str(out), "test:0", "--attention", str(tmp_path / "a.png")]) == 2
    assert "trained without attention" in capsys.readouterr().err
    bad = ["--model.attention", "none", "--model.context", "none"]
    assert main(["train", "caption", "--preset", "tiny", "--out", str(tmp_path / "x"), *bad]) == 2
    assert "model.context" in capsys.readouterr().err
    wide = ["--model.vector_size", "8"]  # the fc vector's width is for the model without attention
    assert main(["train", "caption", "--preset", "tiny", "--out", str(tmp_path / "y"), *wide]) == 2
    assert "'model.vector_size' applies to pool fc without attention" in capsys.readouterr().err


def test_the_auxiliary_item_loss_labels_each_cell_and_learns(pools, tmp_path, capsys):
    from rnnkit.tasks import caption
    from rnnkit.tasks.caption_task import CaptionTask, cell_items

    scenes = [D.make_scene("train", i, 1, pools["train"]) for i in range(16)]
    labels = cell_items(scenes)
    for scene, row in zip(scenes, labels, strict=True):
        expected = [len(D.ITEMS)] * 9
        for item, cell in scene.items:
            expected[cell] = item
        assert row.tolist() == expected
    cfg = caption.tiny()
    cfg.data.val_size, cfg.model.item_loss = 500, 1.0
    task = CaptionTask(cfg)
    batch = task.train_batch(0)
    assert torch.equal(batch[3], cell_items([D.make_scene("train", i, 1, task.pool)
                                             for i in range(cfg.data.batch_size)]))  # fmt: skip
    model = task.model.train()
    torch.manual_seed(0)
    opt = torch.optim.Adam(model.parameters(), 3e-3)

    @torch.no_grad()
    def cell_loss() -> float:  # the auxiliary head's cross-entropy on the batch
        images, y_in, _, items = batch
        _, _, cells = model(images, y_in, with_items=True)
        return float(torch.nn.functional.cross_entropy(cells.flatten(0, 1), items.flatten()))

    first = cell_loss()
    for _ in range(25):
        loss, _ = task.loss(model, batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert cell_loss() < 0.7 * first
    bad = ["--model.item_loss", "-1"]
    assert main(["train", "caption", "--preset", "tiny", "--out", str(tmp_path / "x"), *bad]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "model.item_loss" in err
