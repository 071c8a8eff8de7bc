"""The rnnkit command, in-process."""

from rnnkit.cli import main
from rnnkit.demo import DemoConfig, run_demo


def test_demo_trains_and_the_loss_goes_down():
    result = run_demo(DemoConfig(steps=150, delay=3, seq_len=20), progress=False)
    assert result["last_loss"] < 0.5 * result["first_loss"]
    assert len(result["grad_norms"]) == 20


def test_demo_command_prints_a_report(capsys):
    assert main(["demo", "--steps", "5", "--cell", "gru", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out and "t= 40" in out


def test_bad_option_is_one_line_error(capsys):
    assert main(["demo", "--cell", "transformer", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        "rnnkit demo: error: cell must be one of ['elman', 'gru', 'lstm', 'mingru'], "
        "got 'transformer'"
    )


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "demo" in capsys.readouterr().out
    assert main(["--version"]) == 0


def test_bad_demo_numbers_are_one_line_errors(capsys):
    for args, message in [
        (["--hidden-size", "0"], "hidden_size must be a positive integer, got 0"),
        (["--steps", "0"], "steps must be at least 1, got 0"),
        (["--batch-size", "-2"], "batch_size must be at least 1, got -2"),
        (["--lr", "nan"], "lr must be a finite number > 0, got nan"),
        (["--seed", "-1"], "seed must be in [0, 2**63 - 1], got -1"),
    ]:
        assert main(["demo", *args, "--quiet"]) == 2
        assert capsys.readouterr().err.strip() == f"rnnkit demo: error: {message}"
