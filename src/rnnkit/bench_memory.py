"""The old name of ``rnnkit.bench.memory`` (``rnnkit bench memory``), kept for old imports."""

from rnnkit.bench.memory import *  # noqa: F403
from rnnkit.bench.memory import main_memory, measure_row, run_memory  # noqa: F401
