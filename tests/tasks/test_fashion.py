"""The fashion task: the IDX reader on the real files and on broken ones, the row and pixel
orders and the fixed permutation, training through the command line (the loss goes down),
predict on a picture, eval with the confusion matrix."""

from __future__ import annotations

import gzip
import json
import math
import struct
from pathlib import Path

import pytest
import torch
from PIL import Image

from rnnkit.cli import main
from rnnkit.tasks import fashion_data as fd
from user_errors import one_line_error

QUIET = ["--train.progress", "false"]


def idx_bytes(magic: int, shape: tuple[int, ...], data: bytes) -> bytes:
    return struct.pack(f">I{len(shape)}I", magic, *shape) + data


# ---- the IDX reader --------------------------------------------------------------------------
def test_the_real_files_read_as_60000_and_10000_images_of_10_classes():
    for split, n in (("train", 60_000), ("test", 10_000)):
        images, labels = fd.load_split(None, split)
        assert images.shape == (n, 28, 28) and images.dtype == torch.uint8
        assert labels.shape == (n,) and labels.dtype == torch.int64
        assert labels.min() == 0 and labels.max() == 9
        assert torch.bincount(labels).tolist() == [n // 10] * 10  # the data set is balanced
        assert images.float().mean() > 60 and images.max() == 255  # real pictures, not blank
    assert fd.load_split(None, "test")[1][:5].tolist() == [9, 2, 1, 1, 6]  # the t10k file's


def test_an_uncompressed_idx_file_reads_the_same(tmp_path):
    data = bytes(range(2 * 3 * 4))
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(idx_bytes(fd.IMAGES_MAGIC, (2, 3, 4), data))
    x = fd.read_idx(path, fd.IMAGES_MAGIC)
    assert x.shape == (2, 3, 4) and x.flatten().tolist() == list(data)
    gz = tmp_path / "x-idx3-ubyte.gz"
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert torch.equal(fd.read_idx(gz, fd.IMAGES_MAGIC), x)


def test_a_bad_magic_number_is_one_line_naming_the_file(tmp_path):
    labels = tmp_path / "labels.gz"
    labels.write_bytes(gzip.compress(idx_bytes(fd.LABELS_MAGIC, (3,), bytes(3))))
    one_line_error(
        lambda: fd.read_idx(labels, fd.IMAGES_MAGIC), str(labels), "0x00000801", "0x00000803"
    )
    text = tmp_path / "notes.txt"
    text.write_text("hello world, not an IDX file\n")
    one_line_error(lambda: fd.read_idx(text, fd.LABELS_MAGIC), str(text), "bad magic number")


def test_a_truncated_file_is_one_line_naming_the_file(tmp_path):
    whole = idx_bytes(fd.IMAGES_MAGIC, (10, 28, 28), bytes(10 * 28 * 28))
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(whole[:-100])
    one_line_error(lambda: fd.read_idx(short, fd.IMAGES_MAGIC), str(short), "truncated", "7840")
    header = tmp_path / "header-idx3-ubyte"
    header.write_bytes(whole[:9])  # the magic number and part of the sizes
    one_line_error(lambda: fd.read_idx(header, fd.IMAGES_MAGIC), str(header), "truncated")
    cut_gzip = tmp_path / "cut-idx3-ubyte.gz"
    cut_gzip.write_bytes(gzip.compress(whole)[:-20])  # the stream ends early
    one_line_error(lambda: fd.read_idx(cut_gzip, fd.IMAGES_MAGIC), str(cut_gzip), "truncated")
    one_line_error(lambda: fd.read_idx(tmp_path / "none.gz", 0x801), "none.gz", "no such file")


def test_a_data_directory_with_mismatched_files_is_one_line(tmp_path):
    images = idx_bytes(fd.IMAGES_MAGIC, (3, 28, 28), bytes(3 * 784))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(images))
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(fd.LABELS_MAGIC, (2,), b"\0\1"))
    one_line_error(lambda: fd.load_split(str(tmp_path), "test"), "2 labels for 3 images")
    one_line_error(lambda: fd.load_split(str(tmp_path), "train"), "train-images-idx3-ubyte.gz")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(fd.LABELS_MAGIC, (3,), b"\0\1\x0c"))
    one_line_error(lambda: fd.load_split(str(tmp_path), "test"), "label 12, expected 0..9")


# ---- the orders ------------------------------------------------------------------------------
def test_row_order_is_28_steps_of_rows_and_pixel_order_is_784_steps_in_raster_order():
    images = fd.load_split(None, "test")[0][:5]
    rows = fd.to_sequences(images, "row")
    assert rows.shape == (28, 5, 28) and 0 <= rows.min() and rows.max() <= 1
    assert torch.equal(rows[7, 3], images[3, 7].float() / 255)  # step 7 of image 3 = its row 7
    pixels = fd.to_sequences(images, "pixel")
    assert pixels.shape == (784, 5, 1)
    assert torch.equal(pixels[28 * 7 + 11, 3, 0], images[3, 7, 11].float() / 255)
    assert torch.equal(pixels[:, :, 0].T.reshape(5, 28, 28), rows.transpose(0, 1))


def test_the_permutation_is_fixed_and_a_true_permutation():
    perm = fd.permutation(0)
    assert torch.equal(perm, fd.permutation(0))  # the same in every run
    assert torch.equal(perm.sort().values, torch.arange(784))  # each pixel exactly once
    assert not torch.equal(perm, torch.arange(784)) and not torch.equal(perm, fd.permutation(1))
    images = fd.load_split(None, "test")[0][:4]
    raster, shuffled = fd.to_sequences(images, "pixel"), fd.to_sequences(images, "pixel", perm)
    assert torch.equal(shuffled, raster[perm])  # step t reads pixel perm[t]
    assert torch.equal(shuffled.sort(0).values, raster.sort(0).values)  # same pixels, reordered


def test_the_task_reads_the_order_its_options_give(tmp_path):
    from rnnkit.config import apply_overrides
    from rnnkit.tasks.base import get_task

    spec = get_task("fashion")
    cfg = apply_overrides(spec.presets["tiny"](), {"data.order": "pixel", "data.permute": True})
    spec.check(cfg)
    cfg.model.chrono_t_max = 784.0  # (checked on the meta device: slow the first time)
    task = spec.build(cfg)
    H = cfg.model.hidden_size
    forget = task.model.rnn.bias_ih_l0[H : 2 * H]
    assert forget.min() >= 0 and forget.max() <= math.log(783)  # chrono: log U(1, T - 1)
    assert task.val_x.shape == (784, 256, 1)
    x, y = task.train_batch(0)
    assert x.shape == (784, 32, 1) and y.shape == (32,)
    assert task.model(x).shape == (32, 10)
    train, val = fd.split(cfg.data, 60_000)
    assert len(train) == 256 and not set(train.tolist()) & set(val.tolist())
    for bad, words in (
        ({"data.permute": True}, "applies to data.order pixel"),
        ({"data.val_size": 40_000}, "data.val_size"),
        ({"data.batch_size": 1000}, "data.batch_size"),
        ({"data.path": str(tmp_path)}, "train-images-idx3-ubyte.gz"),
    ):
        one_line_error(lambda b=bad: spec.check(apply_overrides(spec.presets["tiny"](), b)), words)


# ---- a trained run: train, predict, eval -----------------------------------------------------
@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fashion") / "run"
    assert main(["train", "fashion", "--preset", "tiny", "--out", str(out), *QUIET]) == 0
    return out


def test_training_through_the_command_line_lowers_the_loss(run):
    records = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    train = [r["loss"] for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert sum(train[-3:]) / 3 < 0.85 * sum(train[:2]) / 2, train
    assert val[-1]["loss"] < 0.9 * math.log(10)  # ln 10: the loss of a uniform guess
    assert val[-1]["accuracy"] > val[-1]["baseline_accuracy"] + 0.15


def test_predict_a_picture_the_test_writes(run, tmp_path, capsys):
    images, labels = fd.load_split(None, "test")
    trouser = int((labels == 1).nonzero()[0])
    light = tmp_path / "trouser.png"
    fd.write_picture(images[trouser], light, scale=4)  # 112x112, as the data set has it
    dark = tmp_path / "trouser_on_white.jpg"  # a photo-like picture: dark on light, RGB
    with Image.open(light) as picture:
        assert picture.size == (112, 112)
        picture.convert("RGB").point(lambda v: 255 - v).save(dark)
    back, inverted = fd.read_picture(dark)
    assert inverted and (back.float() - images[trouser].float()).abs().mean() < 12
    seen = tmp_path / "seen"
    args = [str(light), str(dark), "test:0", "--top", "3", "--save", str(seen)]
    assert main(["predict", str(run), *args]) == 0
    lines = capsys.readouterr().out.splitlines()
    saved = sorted(seen.iterdir())  # each input as the model saw it: 28x28, light on black
    names = ["001_trouser.png", "002_trouser_on_white.png", "003_test_0.png"]
    assert [p.name for p in saved] == names
    assert torch.equal(fd.read_picture(saved[2], "no")[0], images[0])
    from rnnkit.tasks.base import registry
    from rnnkit.tasks.runs import load_run

    loaded = load_run(run, None)
    assert registry()["fashion"].predict(loaded, str(light)).split(" (")[0] in fd.CLASSES
    assert len(lines) == 3 and "(inverted: dark on light)" in lines[1]
    assert lines[2].startswith("test:0\t") and "(true class: Ankle boot)" in lines[2]
    for line in lines:
        shown = line.split("\t")[1].split("  (")[0].split(", ")
        assert len(shown) == 3
        probs = [float(s.rsplit(" ", 1)[1]) for s in shown]
        assert all(0 <= p <= 1 for p in probs) and probs == sorted(probs, reverse=True)
        assert shown[0].rsplit(" ", 1)[0] in fd.CLASSES


def test_eval_writes_the_scores_and_the_confusion_matrix(run, capsys):
    assert main(["eval", str(run), "--limit", "300"]) == 0
    out = capsys.readouterr().out
    assert "fashion test: 300 images, row order" in out and "Ankle boot" in out
    result = json.loads((run / "eval_test.json").read_text())
    matrix = torch.tensor(result["confusion"])
    assert matrix.shape == (10, 10) and int(matrix.sum()) == 300
    labels = fd.load_split(None, "test")[1][:300]
    assert matrix.sum(1).tolist() == torch.bincount(labels, minlength=10).tolist()  # true rows
    assert result["accuracy"] == pytest.approx(float(matrix.trace()) / 300)
    assert result["accuracy"] > 0.25  # better than chance after the tiny training
    shirt = result["per_class_accuracy"]["Shirt"]
    assert shirt == pytest.approx(float(matrix[6, 6] / matrix[6].sum()))
    with Image.open(run / "eval_test.png") as png:
        assert png.format == "PNG" and min(png.size) > 200


def test_user_errors_are_one_line(run, tmp_path, capsys):
    assert main(["predict", str(run), str(tmp_path / "missing.png")]) == 2
    assert "missing.png: no such file" in capsys.readouterr().err
    (tmp_path / "not.png").write_text("text, not a picture")
    assert main(["predict", str(run), str(tmp_path / "not.png")]) == 2
    assert "not a picture" in capsys.readouterr().err
    assert main(["predict", str(run), "test:10000"]) == 2
    assert "has 10000 images" in capsys.readouterr().err
    assert main(["eval", str(run), "--out", str(tmp_path / "c.png")]) == 2
    assert ".json" in capsys.readouterr().err


def test_accuracy_curves_of_runs_are_a_png(run, tmp_path):
    from rnnkit.tasks.fashion_commands import plot_accuracy_curves

    for by in ("minutes", "steps"):
        png = plot_accuracy_curves({"a": run, "b": run}, tmp_path / f"{by}.png", "two", by=by)
        with Image.open(png) as picture:
            assert picture.format == "PNG" and picture.getextrema()[0][0] < 100  # lines drawn
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "log.jsonl").write_text("")
    one_line_error(
        lambda: plot_accuracy_curves({"x": tmp_path / "empty"}, tmp_path / "c.png", "t"), "empty"
    )
