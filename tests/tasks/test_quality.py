"""The slow quality run of the main job (pytest -m slow; ./run slow)."""

import pytest


@pytest.mark.slow
def test_default_charlm_preset_reaches_1_60_nats_in_10_minutes(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))
    from charlm_quality import TARGET, run

    result = run(tmp_path / "run")
    assert result["val_loss"] <= TARGET
    assert result["train_minutes"] <= 10.0
