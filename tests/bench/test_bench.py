"""``rnnkit bench speed`` on tiny configs: every row runs and the records are well formed.
Nothing here is timed or compares speeds; speed is measured by the benchmark, never asserted."""

import json

import pytest
import torch

from rnnkit.bench import (
    CONFIGS,
    ROWS,
    SAMPLE_ROWS,
    TABLE_ROWS,
    CustomLSTM,
    SpeedConfig,
    WithoutOneDNN,
    flops_per_token,
    format_table,
    forward_flops_per_token,
    layer_flops,
    main_speed,
    run_speed,
)
from rnnkit.cli import main

TINY = {
    "t": SpeedConfig("t", hidden_size=8, num_layers=2, T=5, B=2),
    "f": SpeedConfig("f", hidden_size=8, num_layers=1, T=5, B=2, input_size=6, infer=False),
    "s": SpeedConfig("s", hidden_size=8, num_layers=2, T=5, B=1, sample=True),
}
TINY_PEAK = ((16, 16, 16),)
REQUIRED = {"config", "cell", "impl", "mode", "tokens_per_s", "ratio", "pct_peak", "gflops"}


@pytest.fixture(scope="module")
def tiny_run():
    torch.manual_seed(0)
    matmul = []
    records = run_speed(TINY, repeats=2, warmup=1, peak_sizes=TINY_PEAK, matmul_records=matmul)
    return records, matmul


def test_every_row_runs_in_every_mode(tiny_run):
    records, _ = tiny_run
    got = {(r["config"], r["cell"], r["impl"], r["mode"]) for r in records}
    want = {("t", cell, impl, mode) for cell, impl in TABLE_ROWS for mode in ("train", "infer")}
    want |= {("f", cell, impl, "train") for cell, impl in TABLE_ROWS}
    want |= {("s", cell, impl, "sample") for cell, impl in SAMPLE_ROWS}
    assert got == want and len(records) == len(want)


def test_records_have_the_required_keys_and_sane_values(tiny_run):
    records, matmul = tiny_run
    for r in records:
        assert REQUIRED <= r.keys()
        assert r["tokens_per_s"] > 0 and r["ratio"] > 0 and r["pct_peak"] > 0
        assert r["min_tokens_per_s"] <= r["tokens_per_s"] <= r["max_tokens_per_s"]
        assert r["repeats"] == 2 and len(r["seconds"]) == 2
        assert r["flops_per_token"] == flops_per_token(r["cell"], TINY[r["config"]], r["mode"])
        if r["impl"] == "torch.nn":
            assert r["ratio"] == 1.0
        twin = "lstm" if (r["cell"], "torch.nn") not in ROWS else r["cell"]
        assert r["ratio_to"] == f"{twin} torch.nn"
    # the peak: 16³ always, plus each non-sampling config's (B·T)×I @ I×4H
    assert {m["size"] for m in matmul} == {"16x16x16", "10x8x32", "10x6x32"}
    assert records[0]["peak_gflops"] == max(m["gflops"] for m in matmul)


def test_table_has_a_section_per_config_and_mode_and_a_summary(tiny_run):
    records, _ = tiny_run
    text = format_table(records)
    for heading in ("config t, train", "config t, infer", "config f, train", "config s, sample"):
        assert heading in text
    assert "config f, infer" not in text
    assert "custom loop" in text and "gru_reset_before" in text
    assert "summary train, rnnkit/torch.nn: lstm t " in text
    assert "summary sample, rnnkit/torch.nn: lstm s " in text


def test_flop_formulas_on_known_cases():
    # one layer, I = 3, H = 4: 2 FLOPs per multiply-add, G gate blocks of H×(I+H)
    assert layer_flops("rnn_tanh", 3, 4) == 2 * 4 * 7 == 56
    assert layer_flops("lstm", 3, 4) == layer_flops("lstm_layernorm", 3, 4) == 2 * 16 * 7
    assert layer_flops("gru", 3, 4) == layer_flops("gru_reset_before", 3, 4) == 2 * 12 * 7
    assert layer_flops("minimal_gru", 3, 4) == 2 * 8 * 7
    assert layer_flops("jordan", 3, 4) == 2 * 4 * 7 + 2 * 4 * 4  # plus the output product
    # config A: two LSTM layers of 2·4·512·(512+512), head 2·512·65; training 3× the forward
    a = CONFIGS["A"]
    assert forward_flops_per_token("lstm", a) == 2 * 8 * 512 * 1024 + 2 * 512 * 65 == 8_455_168
    assert flops_per_token("lstm", a, "train") == 3 * 8_455_168
    assert flops_per_token("lstm", a, "infer") == 8_455_168
    # config C: float inputs of width 256 into one layer of 1024
    assert forward_flops_per_token("gru", CONFIGS["C"]) == 2 * 3 * 1024 * 1280 + 2 * 1024 * 65


def test_the_custom_loop_is_an_lstm():
    theirs = torch.nn.LSTM(3, 5, 2)
    ours = CustomLSTM(3, 5, 2)
    with torch.no_grad():
        for l in range(2):
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(ours, name)[l].copy_(getattr(theirs, f"{name}_l{l}"))
    xs = torch.randn(4, 2, 3)
    hx = (torch.randn(2, 2, 5), torch.randn(2, 2, 5))
    for a, b in zip(ours(xs, hx), theirs(xs, hx), strict=True):
        torch.testing.assert_close(a, b)


def test_the_onednn_off_row_is_torch_lstm_and_restores_the_flag():
    lstm = torch.nn.LSTM(3, 5)
    xs = torch.randn(4, 2, 3)
    before = torch.backends.mkldnn.enabled
    with torch.no_grad():
        for a, b in zip(WithoutOneDNN(lstm)(xs), lstm(xs), strict=True):
            torch.testing.assert_close(a, b)
    assert torch.backends.mkldnn.enabled == before


def test_json_is_written(tmp_path, capsys):
    path = tmp_path / "out" / "bench.json"
    argv = ["--json", str(path), "--repeats", "1", "--warmup", "0", "--configs", "t,s"]
    assert main_speed(argv, configs=TINY, peak_sizes=TINY_PEAK) == 0
    data = json.loads(path.read_text())
    assert data["torch"] == torch.__version__ and data["threads"] == torch.get_num_threads()
    assert data["peak_gflops"] > 0
    assert {r["config"] for r in data["records"]} == {"t", "s"}
    assert all(REQUIRED <= r.keys() for r in data["records"])
    out = capsys.readouterr().out
    assert "config t, train" in out and f"records written to {path}" in out


@pytest.mark.parametrize("on", [True, False])
def test_rows_run_under_the_trainers_cpu_modes_unless_told_not_to(tmp_path, monkeypatch, on):
    from rnnkit.bench import speed
    from rnnkit.denormals import is_flushed
    from rnnkit.heap import is_kept

    seen = []
    run = speed.run_speed

    def spy(*args, **kwargs):
        seen.append((is_flushed(), is_kept()))
        return run(*args, **kwargs)

    monkeypatch.setattr(speed, "run_speed", spy)
    path = tmp_path / "bench.json"
    argv = ["--json", str(path), "--repeats", "1", "--warmup", "0", "--configs", "t"]
    argv += ["--cpu-modes", str(on).lower()]
    assert main_speed(argv, configs=TINY, peak_sizes=TINY_PEAK) == 0
    assert seen == [(on, on)] and json.loads(path.read_text())["cpu_modes"] is on
    assert not is_flushed() and not is_kept()  # set back after


def test_speed_help(capsys):
    assert main(["bench", "speed", "--help"]) == 0
    out = capsys.readouterr().out
    assert "--quick" in out and "--json" in out and "--threads" in out


def test_bench_help_lists_the_benchmarks(capsys):
    assert main(["bench", "--help"]) == 0
    assert "speed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["bench", "nope"], "rnnkit bench: error: unknown benchmark 'nope'; benchmarks: speed"),
        (["bench"], "rnnkit bench: error: bench needs a benchmark name"),
        (["bench", "speed", "--bogus"], "rnnkit bench: error: unrecognized arguments: --bogus"),
        (["bench", "speed", "--configs", "Z"], "rnnkit bench: error: unknown config 'Z'"),
        (["bench", "speed", "--threads", "0"], "rnnkit bench: error: --threads must be"),
    ],
)
def test_bad_input_is_a_one_line_error(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith(message) and "\n" not in err
    assert captured.out == ""
