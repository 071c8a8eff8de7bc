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
