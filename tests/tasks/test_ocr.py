"""The OCR task: seeded rendering, held-out fonts/works/digit images, training through the
command line (the loss goes down), predict on a PNG (and --columns), eval (JSON + PNG), and
one-line errors for bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from PIL import Image

from rnnkit.cli import main
from rnnkit.errors import UserError
from rnnkit.tasks import ocr_data as D
from rnnkit.tasks import ocr_task

QUIET = ["--train.progress", "false"]
WORDS = "the quick brown fox jumps over a lazy dog and then runs far away".split()


def losses(run: Path, split: str) -> list[float]:
    lines = (run / "log.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == split]


def save_png(img: np.ndarray, path: Path) -> Path:
    """A line as a user would have it: dark ink on a light background."""
    Image.fromarray((255 - img * 255).astype(np.uint8)).save(path)
    return path


def test_every_font_is_found_and_draws_the_ascii_letters():
    for name, file in D.FONT_FILES.items():
        assert (D.font_dir() / file).is_file(), name
        assert set("abcxyzABCXYZ0189.,") <= D.coverage(name), name
    assert '"' not in D.coverage("CM Roman") and '"' in D.coverage("CM Typewriter")


def test_rendering_is_seeded_32_high_and_grows_with_the_text():
    a = D.render_text("Hark, a line", "DejaVu Sans", np.random.default_rng(3))
    b = D.render_text("Hark, a line", "DejaVu Sans", np.random.default_rng(3))
    c = D.render_text("Hark, a line", "DejaVu Sans", np.random.default_rng(4))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape[0] == D.HEIGHT and a.dtype == np.float32 and 0 <= a.min() <= a.max() <= 1
    short = [D.render_text("To be", "STIX", np.random.default_rng(s)).shape[1] for s in range(8)]
    longer = [
        D.render_text("To be, or not to be, that is", "STIX", np.random.default_rng(s)).shape[1]
        for s in range(8)
    ]
    assert min(longer) > 2 * max(short)
    img, text, used = D.render_digits(np.arange(50), np.random.default_rng(0))
    assert img.shape[0] == D.HEIGHT and 3 <= len(text) <= 12 and len(used) == len(text)


def test_held_out_fonts_and_works_never_appear_in_training():
    lines = ocr_task.Lines(ocr_task.OCRDataConfig())
    train = lines.plan("train", 400, 5)
    assert {f for _, f in train}.isdisjoint(D.DEFAULT_HOLDOUT)
    assert len({f for _, f in train}) > 10  # drawn from many training fonts
    held = lines.plan("test_fonts", 100, ocr_task.TEST_SEED)
    assert {f for _, f in held} <= set(D.DEFAULT_HOLDOUT)
    test = lines.plan("test", 100, ocr_task.TEST_SEED)
    assert [t for t, _ in test] == [t for t, _ in held]  # the same lines in the unseen fonts
    assert {f for _, f in test}.isdisjoint(D.DEFAULT_HOLDOUT)
    works = D.split_works(__import__("rnnkit.data", fromlist=["x"]).default_corpus_text())
    assert "THE TEMPEST" in works["test"] and "THE TEMPEST" not in works["train"]
    assert "MACBETH" in works["val"] and "HAMLET" in works["train"]


def test_held_out_digit_images_never_appear_in_training_lines():
    split = D.digit_split()
    assert set(split["train"]).isdisjoint(split["test"])
    assert set(split["train"]).isdisjoint(split["val"])
    rng = np.random.default_rng(0)
    used = {i for _ in range(200) for i in D.render_digits(split["train"], rng)[2]}
    assert used <= set(split["train"]) and used.isdisjoint(split["test"])


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    lines = [" ".join(rng.choice(WORDS, rng.integers(1, 4))) for _ in range(300)]
    path = tmp_path_factory.mktemp("ocr") / "words.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory, corpus) -> Path:
    out = tmp_path_factory.mktemp("ocr") / "run"
    code = main(["train", "ocr", "--preset", "tiny", "--data", str(corpus), "--out", str(out),
                 *QUIET, "--train.max_steps", "24", "--train.eval_every", "12"])  # fmt: skip
    assert code == 0
    return out


def test_training_lowers_the_loss(run):
    train, val = losses(run, "train"), losses(run, "val")
    assert train[-1] < 0.7 * train[0]
    assert val[-1] < val[0]


def test_predict_reads_a_png_and_draws_its_columns(run, tmp_path, capsys):
    img = D.render_text("the lazy dog", "DejaVu Sans", np.random.default_rng(1))
    line = save_png(img, tmp_path / "line.png")
    columns = tmp_path / "columns.png"
    assert main(["predict", str(run), str(line), "--beam", "4", "--columns", str(columns)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == f"columns: {columns}"
    assert set(out[0]) <= set("".join(WORDS) + " ")  # text in the run's alphabet (maybe empty)
    picture = imread(columns)
    assert picture.shape[1] > 300 and picture[..., :3].std() > 0.05


def test_eval_writes_json_and_png(run, tmp_path, capsys):
    out = tmp_path / "e.json"
    assert main(["eval", str(run), "--beam", "3", "--lines", "12", "--out", str(out)]) == 0
    results = json.loads(out.read_text())["results"]
    assert set(results) == {"test", "test_fonts"}
    for split in results.values():
        assert set(split) == {"greedy", "beam 3"}
        for r in split.values():
            assert 0 <= r["cer"] and r["lines"] == 12
            assert sum(row["lines"] for row in r["by_length"]) == 12
    assert imread(out.with_suffix(".png")).shape[0] > 100
    assert "test_fonts beam 3" in " ".join(capsys.readouterr().out.split())
    capsys.readouterr()
    assert main(["eval", str(run), "--lines", "2", "--out", str(out)]) == 2  # never overwritten
    assert f"--out: {out} exists; pass --force" in capsys.readouterr().err
    assert main(["eval", str(run), "--lines", "2", "--out", str(out), "--force"]) == 0


def one_line_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    return err


def test_bad_images_give_one_line(run, tmp_path, capsys):
    fake = tmp_path / "fake.png"
    fake.write_text("not a picture")
    assert "not an image" in one_line_error(["predict", str(run), str(fake)], capsys)
    wide = save_png(np.zeros((32, 5000), np.float32), tmp_path / "wide.png")
    err = one_line_error(["predict", str(run), str(wide)], capsys)
    assert "5,000 pixels wide" in err and "4,096" in err
    missing = tmp_path / "missing.png"
    assert "no such file" in one_line_error(["predict", str(run), str(missing)], capsys)


@pytest.mark.parametrize(
    "text, expected",
    [("good line\nbad \x1b line\n", "line 2: control or format character U+001B"),
     ("good line\nbad \0 line\n", "NUL byte"),
     ("fine\nwith 漢 here\n", "line 2: character '漢' (U+6F22) is in none of the training")],
)  # fmt: skip
def test_characters_no_font_draws_are_refused(tmp_path, capsys, text, expected):
    data = tmp_path / "data.txt"
    data.write_text(text * 30)
    err = one_line_error(["train", "ocr", "--preset", "tiny", "--data", str(data),
                          "--out", str(tmp_path / "r"), *QUIET], capsys)  # fmt: skip
    assert expected in err and str(data) in err


def test_a_missing_data_file_and_unknown_font_are_one_line(tmp_path, capsys):
    err = one_line_error(["train", "ocr", "--preset", "tiny", "--data", str(tmp_path / "no.txt"),
                          "--out", str(tmp_path / "r"), *QUIET], capsys)  # fmt: skip
    assert "no.txt" in err
    with pytest.raises(UserError, match="unknown font 'Comic Sans'"):
        D.check_fonts(["Comic Sans"], "data.holdout_fonts")
