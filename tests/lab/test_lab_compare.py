"""``rnnkit lab compare``: a tiny grid end to end, the table's arithmetic, and option errors."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from rnnkit.cli import main
from rnnkit.lab.compare import plot_compare, table_markdown


def test_a_tiny_grid_writes_records_table_and_plot(tmp_path, capsys):
    out = tmp_path / "cmp"
    argv = [
        "lab",
        "compare",
        "adding",
        "--preset",
        "tiny",
        "--cells",
        "elman,gru",
        "--T",
        "4,8",
        "--seeds",
        "2",
        "--steps",
        "4",
        "--out",
        str(out),
        "--quiet",
        "--train.eval_every",
        "2",
        "--model.hidden_size",
        "4",
    ]
    assert main(argv) == 0
    records = json.loads((out / "results.json").read_text())
    assert len(records) == 2 * 2 * 2
    assert {(r["cell"], r["T"], r["seed"]) for r in records} == {
        (c, T, s) for c in ("elman", "gru") for T in (4, 8) for s in (0, 1)
    }
    for r in records:
        assert r["steps"] == 4 and r["metric"] == "mse" and r["baseline"] == pytest.approx(1 / 6)
        assert r["best"] <= r["final"] and r["seconds"] > 0
        log = [json.loads(x) for x in (Path(r["run"]) / "log.jsonl").read_text().splitlines()]
        val = [x["mse"] for x in log if x["split"] == "val"]
        assert r["final"] == val[-1] and r["best"] == min(val)
    seeds = [r for r in records if r["cell"] == "gru" and r["T"] == 8]
    assert seeds[0]["final"] != seeds[1]["final"]  # different seeds, different runs
    table = (out / "results.md").read_text()
    assert "| T | elman | gru | baseline |" in table and "| 8 |" in table and "0.1667" in table
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "results.md" in capsys.readouterr().out
    # the same directory again is refused rather than mixed with the old runs
    assert main(argv) == 2


def test_jobs_run_in_worker_processes_with_the_serial_results(tmp_path):
    """--jobs 2 trains the same runs as one after another (each run is seeded and
    deterministic), in grid order in results.json."""
    common = [
        "lab",
        "compare",
        "adding",
        "--preset",
        "tiny",
        "--cells",
        "elman,gru",
        "--T",
        "4",
        "--seeds",
        "2",
        "--steps",
        "3",
        "--quiet",
        "--train.eval_every",
        "3",
        "--model.hidden_size",
        "4",
        "--train.threads",
        "1",
    ]
    assert main([*common, "--out", str(tmp_path / "serial")]) == 0
    assert main([*common, "--jobs", "2", "--out", str(tmp_path / "parallel")]) == 0
    serial, parallel = (
        json.loads((tmp_path / d / "results.json").read_text()) for d in ("serial", "parallel")
    )
    key = [(r["cell"], r["T"], r["seed"]) for r in parallel]
    assert key == [("elman", 4, 0), ("elman", 4, 1), ("gru", 4, 0), ("gru", 4, 1)]
    assert [r["final"] for r in parallel] == [r["final"] for r in serial]
    assert (tmp_path / "parallel" / "compare.png").exists()


def test_table_mean_and_std_over_seeds(tmp_path):
    records = [
        {
            "task": "copy",
            "cell": c,
            "T": T,
            "seed": s,
            "metric": "ce",
            "final": v,
            "baseline": 10 * 2.0794415416798357 / (T + 20),
            "baseline_name": "baseline_ce",
        }
        for c, T, s, v in [
            ("lstm", 10, 0, 0.2),
            ("lstm", 10, 1, 0.4),
            ("elman", 10, 0, 0.5),
            ("elman", 20, 0, 0.6),
            ("lstm", 20, 0, math.nan),
            ("elman", 40, 0, 0.7),
        ]
    ]
    text = table_markdown(records)
    std = statistics.stdev([0.2, 0.4])
    assert f"| 10 | {0.3:.4g} ± {std:.2g} (2) | 0.5 | 0.6931 |" in text
    assert "| 20 | diverged (1 of 1) | 0.6 | 0.5199 |" in text
    assert "| 40 | – | 0.7 | 0.3466 |" in text  # a missing (cell, T) shows as a dash
    some = [dict(records[0], seed=s, final=v) for s, v in enumerate([0.1, math.nan, 0.3])]
    text = table_markdown(some)  # a run that diverged is counted apart, not averaged as NaN
    assert f"| 10 | 0.2 ± {statistics.stdev([0.1, 0.3]):.2g} (2), 1 of 3 diverged |" in text
    assert plot_compare(records, tmp_path / "c.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["adding", "--cells", "elman,tcn"], "unknown cell 'tcn'"),
        (["digits"], "cannot be compared over T"),
        (["nosuch"], "cannot be compared over T"),
        (["adding", "--T", "50,0"], "--T: sequence lengths must be >= 1"),
        (["adding", "--T", "fifty"], "--T: expected comma-separated integers"),
        (["adding", "--T", "1"], "data.T' must be >= 2"),  # the adding problem needs two halves
        (["adding", "--seeds", "0"], "--seeds: expected an integer >= 1"),
        (["adding", "--minutes", "-1"], "--minutes: expected a number > 0"),
        (["adding", "--steps", "0"], "--steps: expected an integer >= 1"),
        (["adding", "--jobs", "0"], "--jobs: expected an integer >= 1"),
        (["adding", "--preset", "huge"], "unknown preset 'huge'"),
        (["adding", "--model.hidden_size", "0"], "model.hidden_size"),
        (["adding", "--bogus"], "unrecognized arguments"),
    ],
)
def test_bad_options_are_one_line_errors(args, message, tmp_path, capsys):
    assert main(["lab", "compare", *args, "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_a_file_in_the_way_of_the_runs_is_one_line(tmp_path, capsys):
    (tmp_path / "runs").write_text("not a directory")
    argv = [
        "lab",
        "compare",
        "adding",
        "--preset",
        "tiny",
        "--cells",
        "elman",
        "--T",
        "4",
        "--steps",
        "2",
        "--quiet",
        "--jobs",
        "2",
        "--out",
        str(tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("choose another --out") and "Traceback" not in err
    assert len(err.splitlines()) == 1
