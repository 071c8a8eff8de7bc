"""The benchmark scripts behind README figures, on tiny inputs: they run end to end, write what
they say, and refuse bad options in one line. (Their timings are not checked: timings are
benchmarks, not tests.)"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from rnnkit.cli import main as rnnkit

ROOT = Path(__file__).resolve().parents[2]


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_step_costs_rows_and_json(tmp_path):
    from test_g2p import write_dict

    script = load("step_costs")
    out = tmp_path / "costs.json"
    data = write_dict(tmp_path / "d.dict")
    results = script.main(["--repeats", "1", "--json", str(out), "--g2p-data", str(data)])
    assert json.loads(out.read_text()) == results
    assert set(results["layers_train_step_s"]) == {
        "torch.nn.LSTM",
        "rnnkit.LSTM",
        "torch.nn.GRU",
        "rnnkit.GRU",
        "rnnkit.MinimalGRU",
    }
    assert len(results["g2p_train_step_s"]) == 2 and len(results["beam_search_s"]) == 2
    assert all(v > 0 for rows in results.values() for v in rows.values())


def test_step_costs_rejects_zero_repeats(capsys):
    with pytest.raises(SystemExit):
        load("step_costs").main(["--repeats", "0"])
    assert "--repeats: expected an integer >= 1" in capsys.readouterr().err


def test_lab_compare_merges_stages_into_the_budget_table(tmp_path, capsys):
    """The merge step (``--stages ""``) over a tiny compare run in a stage directory: the
    records, the table with each seed's MSE and the first step below 0.01, the figures."""
    script = load("lab_compare")
    out = tmp_path / "bench"
    argv = [
        "lab",
        "compare",
        "adding",
        "--preset",
        "tiny",
        "--cells",
        "gru",
        "--T",
        "200",
        "--seeds",
        "2",
        "--steps",
        "4",
        "--out",
        str(out / "stage1-0"),
        "--quiet",
        "--train.eval_every",
        "2",
        "--model.hidden_size",
        "4",
    ]
    assert rnnkit(argv) == 0
    script.main(["--out", str(out), "--stages", ""])
    merged = json.loads((out / "results.json").read_text())
    assert len(merged["records"]) == 2 and merged["extended"] == []
    table = (out / "results.md").read_text()
    row = next(line for line in table.splitlines() if line.startswith("| gru | 200 |"))
    finals = ", ".join(f"{r['final']:.3g}" for r in merged["records"])
    assert finals in row and "of 2" in row
    assert (out / "compare.png").exists() and (out / "curves_T200.png").exists()
    log = out / "stage1-0" / "runs" / "gru-T200-seed0"
    (log / "log.jsonl").write_text(
        '{"split": "val", "step": 2, "mse": 0.5}\n{"split": "val", "step": 4, "mse": 0.005}\n'
    )
    assert script.first_step_below(log) == 4 and script.first_step_below(log, 0.001) is None


def test_lab_compare_rejects_unknown_stages(tmp_path, capsys):
    with pytest.raises(SystemExit):
        load("lab_compare").main(["--out", str(tmp_path), "--stages", "1,9"])
    assert "--stages: expected numbers among 1, 2, 3, 4" in capsys.readouterr().err


def test_attention_experiment_script_end_to_end(tmp_path):
    """benchmarks/seq2seq_attention_by_length.py on the tiny preset: both systems trained the
    same number of steps, scored by length, drawn and written as JSON."""
    from test_translate import write_pairs

    script = load("seq2seq_attention_by_length")
    data = write_pairs(tmp_path / "pairs.tsv")
    png, out = tmp_path / "bleu.png", tmp_path / "bleu.json"
    argv = [
        "--preset",
        "tiny",
        "--data",
        str(data),
        "--steps",
        "12",
        "--limit",
        "20",
        "--out",
        str(tmp_path / "exp"),
        "--png",
        str(png),
        "--json",
        str(out),
    ]
    assert script.main(argv) == 0
    results = json.loads(out.read_text())
    assert len(results) == 2 and png.stat().st_size > 0
    assert all(r["steps"] == 12 and r["examples"] == 20 for r in results.values())
    assert all(r["by_source_length"] for r in results.values())


def test_second_order_overhead_rows_and_json(tmp_path):
    from rnnkit.kernels import dispatch, gru

    script = load("second_order_overhead")
    out = tmp_path / "overhead.json"
    threads = torch.get_num_threads()
    try:
        assert script.main(["--repeats", "2", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)  # the script sets one thread
    rows = json.loads(out.read_text())["rows"]
    assert [r["layer"] for r in rows] == [c[0] for c in script.CASES]
    assert all(r["median_ms_with_origin"] > 0 and r["ratio"] > 0 for r in rows)
    assert gru.origin is dispatch.origin  # the kernels' origin is put back


def test_packed_inference_times_three_ways_with_the_same_outputs(tmp_path):
    out = tmp_path / "packed.json"
    result = load("packed_inference").main(
        ["--repeats", "1", "--json", str(out)], configs=[(5, 3, 4, 6, 2, True)]
    )
    assert [r["cell"] for r in result["rows"]] == ["gru", "lstm"]
    for row in result["rows"]:
        assert set(row["ms"]) == {"rnnkit layer by layer", "rnnkit packed call", "torch.nn packed"}
        assert all(v > 0 for v in row["ms"].values())
    assert json.loads(out.read_text()) == result


def test_new_scripts_refuse_an_unwritable_json_at_once(tmp_path):
    (tmp_path / "a-file").write_text("")
    target = str(tmp_path / "a-file" / "out.json")  # under a file: cannot be written
    for name in (
        "tanh_cost",
        "seq2seq_floor",
        "packed_inference",
        "lstm_call_cost",
        "bf16_matmul",
        "onednn_products",
        "denormals",
        "freed_memory",
        "layer_inference",
    ):
        with pytest.raises(SystemExit, match=r"--json") as stop:
            load(name).main(["--json", target])
        assert "\n" not in str(stop.value)


def test_tanh_cost_times_the_three_ops(tmp_path):
    out = tmp_path / "tanh.json"
    result = load("tanh_cost").main(["--repeats", "1", "--json", str(out)], sizes=[1000])
    (row,) = result["rows"]
    assert set(row["ms"]) == {"torch.tanh", "torch.sigmoid", "2 sigmoid(2x) - 1"}
    assert row["max_abs_difference"] < 1e-6
    assert json.loads(out.read_text()) == result


def test_seq2seq_floor_counts_the_step_and_its_products(tmp_path):
    out = tmp_path / "floor.json"
    result = load("seq2seq_floor").main(["--repeats", "1", "--json", str(out)], presets=("dates",))
    assert json.loads(out.read_text()) == result and result["peak_gflops"] > 0
    row = result["presets"]["dates"]
    assert set(row["step_ms"]) == {"rnnkit kernel", "plain PyTorch"}
    assert 0.1 < row["gflop"] < 10  # the dates model's products, forward and backward
    assert 0 < row["products_share_of_kernel_step"] < 1
    assert row["floor_vs_plain"]["products_only"] > 0 and row["floor_vs_plain"]["at_peak"] > 0


def test_seq2seq_step_compares_kernel_and_loop(tmp_path):
    out = tmp_path / "s2s.json"
    results = load("seq2seq_step").main(
        ["--presets", "dates", "--repeats", "1", "--json", str(out)]
    )
    assert set(json.loads(out.read_text())["presets"]) == {"dates"}
    assert results["dates"]["cpu"]["kernel_s"] > 0 and results["dates"]["cpu"]["loop_s"] > 0


def test_beam_speed_gives_the_baselines_output_on_a_trained_run(tmp_path):
    """beam_speed loads beam_search as it was before early stopping (commit e94a811, from git)
    beside the current one and decodes real words with a trained g2p run: the same output."""
    import subprocess

    from test_g2p import write_dict

    have = subprocess.run(["git", "cat-file", "-e", "e94a811^{commit}"], cwd=ROOT).returncode
    if have:
        pytest.skip("commit e94a811 is not in this clone (shallow?)")

    data = write_dict(tmp_path / "d.dict")
    run = tmp_path / "g2p"
    args = ["train", "g2p", "--preset", "tiny", "--data", str(data), "--out", str(run),
            "--train.progress", "false"]  # fmt: skip
    assert rnnkit(args) == 0
    out = tmp_path / "beam.json"
    result = load("beam_speed").main(
        [
            "--run",
            str(run),
            "--data",
            str(data),
            "--words",
            "24",
            "--repeats",
            "1",
            "--baseline",
            "HEAD",
            "--json",
            str(out),
        ]  # fmt: skip
    )
    assert result["same_outputs"] == 24 and json.loads(out.read_text()) == result


def test_beam_speed_names_a_bad_baseline(tmp_path):
    with pytest.raises(SystemExit, match="--baseline no-such-commit"):
        load("beam_speed").baseline_beam("no-such-commit")


def test_lstm_call_cost_times_the_three_calls(tmp_path):
    out = tmp_path / "calls.json"
    result = load("lstm_call_cost").main(["--repeats", "1", "--json", str(out)], lengths=(2,))
    (row,) = result["rows"]
    assert set(row["us"]) == {"torch op alone", "torch.nn.LSTM", "rnnkit.LSTM"}
    assert all(v > 0 for v in row["us"].values()) and row["torch_nn_over_rnnkit"] > 0
    assert json.loads(out.read_text()) == result


def test_side_by_side_scripts_refuse_zero_repeats_in_one_line():
    for name in ("tanh_cost", "lstm_call_cost"):
        with pytest.raises(SystemExit, match=r"^--repeats: expected an integer >= 1, got 0$"):
            load(name).main(["--repeats", "0"])


def test_bf16_matmul_times_both_precisions(tmp_path):
    out = tmp_path / "bf16.json"
    shapes = {"tiny": (4, 8, 16)}
    result = load("bf16_matmul").main(
        ["--repeats", "1", "--json", str(out)], shapes=shapes, step=False
    )
    (row,) = result["products"]
    assert set(row["ms"]) == {
        "float32",
        "bfloat16",
        "bfloat16 with casts",
        "float32, oneDNN's bf16 fpmath",
    }
    assert torch.backends.mkldnn.matmul.fp32_precision == "none"  # restored
    assert all(v > 0 for v in row["ms"].values())
    assert json.loads(out.read_text()) == result


def test_onednn_products_times_both_paths(tmp_path):
    out = tmp_path / "onednn.json"
    shapes = {"tiny": (8, 16, 1, 3, 4)}
    result = load("onednn_products").main(["--repeats", "1", "--json", str(out)], shapes=shapes)
    layers = ("GRU", "RNN", "MinimalGRU", "LSTM peephole", "LSTM layer norm")
    assert set(result["rows"]) == {f"{layer} tiny" for layer in layers}
    for row in result["rows"].values():
        assert row["off_ms"] > 0 and row["onednn_ms"] > 0
        assert row["max_relative_gradient_difference"] < 1e-5
        assert max(row["from_float64"].values()) < 1e-4
    assert json.loads(out.read_text()) == result


def test_denormals_times_each_mode_and_leaves_the_mode_as_found(tmp_path):
    out = tmp_path / "denormals.json"
    result = load("denormals").main(
        ["--repeats", "1", "--json", str(out)], shape=(6, 3, 2, 4), tasks={"adding": "tiny"},
        task_steps=2,
    )  # fmt: skip
    assert len(result["layers"]) == 12  # six layers at one and two threads
    for name, row in result["layers"].items():
        modes = {"kept", "all threads"} | ({"calling thread"} if "2 thread" in name else set())
        assert set(row["ms"]) == modes and all(v > 0 for v in row["ms"].values())
        assert 0 <= row["denormal_share_of_input_gradient"] <= 1
    assert set(result["tasks_1_thread"]) == {"adding (tiny)"}
    assert json.loads(out.read_text()) == result
    assert ((torch.full((1 << 20,), 1e-30) * 1e-10) != 0).all()  # denormals kept again


def test_freed_memory_times_both_modes_in_fresh_processes(tmp_path):
    out = tmp_path / "freed.json"
    result = load("freed_memory").main(
        ["--repeats", "1", "--steps", "2", "--json", str(out)], tasks={"adding": "tiny"}
    )
    (row,) = result["rows"].values()
    assert set(row["ms"]) == {"glibc as it comes", "freed memory kept"}
    assert all(v > 0 for v in row["ms"].values()) and all(row["peak_rss_mb"].values())
    assert json.loads(out.read_text()) == result


def test_layer_inference_times_the_three_ways_for_each_layer(tmp_path):
    out = tmp_path / "layers.json"
    result = load("layer_inference").main(
        ["--repeats", "1", "--json", str(out)], shapes={"tiny": (3, 4, 2, 5, 2)}
    )
    for name in ("RNN", "GRU"):
        row = result["rows"][name]["tiny"]
        calls = {f"torch.nn.{name}", f"rnnkit.{name}", f"rnnkit.{name}, hand kernel"}
        assert set(row["ms"]) == calls
        assert all(v > 0 for v in row["ms"].values())
        assert row["speed_vs_torch_nn"][f"torch.nn.{name}"] == 1
    assert json.loads(out.read_text()) == result


def test_freed_memory_says_in_one_line_why_a_measuring_process_failed(tmp_path):
    with pytest.raises(SystemExit, match=r"no-such-task \(tiny\).*failed: .*no-such-task") as stop:
        load("freed_memory").main(
            ["--repeats", "1", "--steps", "1"], tasks={"no-such-task": "tiny"}
        )
    assert "\n" not in str(stop.value)
