"""Plots: read_log's semantics on a resumed, killed log; the PNGs of a run; the helpers."""

import json
import os
import struct
import subprocess
import sys

import pytest
import torch

from rnnkit.errors import UserError
from rnnkit.plots import (
    DPI,
    _clip_norm,
    plot_curves,
    plot_heatmap,
    plot_run,
    read_log,
    wrap_title,
)

# No display is needed: plots.py draws on an Agg canvas, outside pyplot; this covers anything
# else that imports matplotlib in this process.
os.environ["MPLBACKEND"] = "Agg"

PNG = b"\x89PNG\r\n\x1a\n"


def png_size(path):
    """(width, height) in pixels, from the IHDR chunk that follows the signature."""
    data = path.read_bytes()
    assert data[:8] == PNG
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def train(step, loss, **extra):
    record = {"step": step, "split": "train", "loss": loss, "grad_norm": 2.0 / step}
    record |= {"lr": 2e-3 * min(1.0, step / 30), "tokens_per_s": 1e4, "time": step / 8}
    return record | extra


def write_run(run_dir, clip_norm=1.0, truncated=True):
    """A run that logged steps 10..100, was killed, resumed from 80 and killed mid-line again."""
    lines = [train(s, 3.0 - s / 100) for s in range(10, 101, 10)]
    lines.insert(5, {"step": 50, "split": "val", "loss": 2.6, "bpc": 2.6 / 0.6931471805599453})
    lines.append({"step": 100, "split": "val", "loss": 2.2})  # no bpc: computed
    lines += [train(s, 1.0) for s in (90, 100, 110)]  # the resumed run: its lines win
    lines.append({"step": 100, "split": "val", "loss": 2.1})
    text = "".join(json.dumps(r) + "\n" for r in lines)
    if truncated:
        text += '{"step": 120, "split": "train", "lo'
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "log.jsonl").write_text(text)
    config = {"config": {"train": {"clip_norm": clip_norm, "lr": 2e-3}}, "argv": ["train"]}
    (run_dir / "config.json").write_text(json.dumps(config))
    return run_dir


# ---- read_log ---------------------------------------------------------------------------------


def test_read_log_later_lines_win_and_a_cut_last_line_is_ignored(tmp_path):
    records = read_log(write_run(tmp_path / "run") / "log.jsonl")
    keys = [(r["split"], r["step"]) for r in records]
    assert len(keys) == len(set(keys)) == 11 + 2  # train 10..110, val 50 and 100
    assert keys[-4:] == [("train", 90), ("train", 100), ("train", 110), ("val", 100)]
    by_key = {(r["split"], r["step"]): r for r in records}
    assert by_key["train", 90]["loss"] == by_key["train", 100]["loss"] == 1.0
    assert by_key["train", 80]["loss"] == pytest.approx(2.2)
    assert by_key["val", 100]["loss"] == 2.1
    assert ("train", 120) not in by_key


def test_read_log_edge_lines(tmp_path):
    log = tmp_path / "log.jsonl"
    # blank lines, a record without a step, a last line cut inside a UTF-8 character
    log.write_bytes(b'{"step": 1, "loss": 2.0}\n\n{"note": "resumed"}\n{"note": "\xc3')
    assert read_log(log) == [{"step": 1, "loss": 2.0}, {"note": "resumed"}]
    log.write_text("")
    assert read_log(log) == []


def test_read_log_corrupt_middle_line_names_file_and_line(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text('{"step": 1, "loss": 2.0}\n{"step": 2, "lo\n{"step": 3, "loss": 1.0}\n')
    with pytest.raises(UserError, match=r"log\.jsonl:2: expected a JSON object") as e:
        read_log(log)
    assert "\n" not in str(e.value)


def test_missing_log_is_a_one_line_user_error(tmp_path):
    with pytest.raises(UserError, match=r"^training log not found: .*nowhere[/\\]log\.jsonl$"):
        read_log(tmp_path / "nowhere" / "log.jsonl")
    with pytest.raises(UserError, match="training log not found"):
        plot_run(tmp_path / "nowhere")


# ---- plot_run ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def plotted(tmp_path_factory):
    """One run, plotted once: (run_dir, paths)."""
    run = write_run(tmp_path_factory.mktemp("runs") / "char_lm-3")
    return run, plot_run(run)


def test_plot_run_writes_three_pngs_into_the_run_dir(plotted):
    run, paths = plotted
    assert [p.name for p in paths] == ["loss.png", "grad_norm.png", "lr.png"]
    for p in paths:
        assert p.parent == run and p.stat().st_size > 1000
        width, height = png_size(p)
        assert width == 8 * DPI and height in (4.5 * DPI, 6.5 * DPI)
    if "matplotlib.pyplot" in sys.modules:  # drawn outside pyplot: no figure left open
        assert sys.modules["matplotlib.pyplot"].get_fignums() == []


def test_plot_run_to_out_dir_skips_what_the_log_lacks(tmp_path):
    """No config.json, no train records: only loss.png, and into out_dir."""
    run = tmp_path / "val_only"
    run.mkdir()
    (run / "log.jsonl").write_text('{"step": 5, "split": "val", "loss": 1.5}\n')
    out = tmp_path / "figures" / "deep"
    assert plot_run(run, out) == [out / "loss.png"]
    assert (out / "loss.png").read_bytes()[:8] == PNG and not (run / "loss.png").exists()
    (run / "log.jsonl").write_text('{"step": 5, "split": "train", "tokens_per_s": 10.0}\n')
    with pytest.raises(UserError, match="no loss, grad_norm or lr records to plot"):
        plot_run(run)


def test_clip_threshold_comes_from_config(tmp_path):
    assert _clip_norm(write_run(tmp_path / "a", clip_norm=0.5)) == 0.5
    assert _clip_norm(write_run(tmp_path / "b", clip_norm=0.0)) is None  # 0 disables clipping
    (tmp_path / "b" / "config.json").unlink()
    assert _clip_norm(tmp_path / "b") is None
    (tmp_path / "b" / "config.json").write_text("{not json")
    with pytest.raises(UserError, match=r"config\.json: not valid JSON"):
        _clip_norm(tmp_path / "b")


# ---- helpers ----------------------------------------------------------------------------------


def test_plot_curves_log_scale_with_reference_line(tmp_path):
    series = {"a": ([1, 2, 3], [1.0, 0.1, 0.01]), "b": ([1, 3], [0.5, 0.05])}
    path = plot_curves(
        series,
        tmp_path / "sub" / "curves.png",
        xlabel="step",
        ylabel="norm",
        title="t",
        logy=True,
        hlines={"clip": 0.2},
    )
    assert png_size(path) == (8 * DPI, 4.5 * DPI)
    with pytest.raises(ValueError, match="series 'a' has 3 x values but 2 y values"):
        plot_curves({"a": ([1, 2, 3], [1, 2])}, tmp_path / "x.png", xlabel="", ylabel="", title="")


def test_plot_heatmap(tmp_path):
    attention = torch.softmax(torch.randn(5, 7, requires_grad=True), -1)
    path = plot_heatmap(
        attention,
        tmp_path / "attention.png",
        xlabels=list("source!"),
        ylabels=list("targt"),
        title="attention",
        xlabel="input",
        ylabel="output",
    )
    assert path.read_bytes()[:8] == PNG
    many = plot_heatmap(
        [[float(i * j) for j in range(60)] for i in range(12)],
        tmp_path / "h.png",
        xlabels=[str(j) for j in range(60)],
    )
    assert png_size(many)[0] <= 12 * DPI
    with pytest.raises(ValueError, match="2-D"):
        plot_heatmap([1.0, 2.0], tmp_path / "bad.png")
    with pytest.raises(ValueError, match="xlabels has 2 labels for 7 x positions"):
        plot_heatmap(attention, tmp_path / "bad.png", xlabels=["a", "b"])


def test_plots_and_decoding_import_without_matplotlib(tmp_path):
    """In a fresh process where ``import matplotlib`` fails: neither imports it at the top."""
    run = write_run(tmp_path / "run")
    probe = f"""
import sys
sys.modules["matplotlib"] = None
import rnnkit.decoding, rnnkit.plots
assert len(rnnkit.plots.read_log({str(run / "log.jsonl")!r})) == 13
try:
    rnnkit.plots.plot_run({str(run)!r})
except ImportError:
    print("ok")  # matplotlib is wanted when drawing, and only then
"""
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_long_titles_wrap_to_the_figure_width():
    sentence = "Then Hezekiah the king arose early, gathered the princes of the city, and went up"
    lines = wrap_title(sentence, 5.0).splitlines()
    assert len(lines) == 2 and all(len(line) <= 50 for line in lines)
    assert " ".join(lines) == sentence and wrap_title("short", 5.0) == "short"
