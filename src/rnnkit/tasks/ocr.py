"""Reading printed text lines (and lines of handwritten digits): ``rnnkit train ocr``, CTC.

The configuration, data and training task are in ``ocr_task`` (lines from ``ocr_data``, the
model in ``ocr_model``); ``rnnkit predict`` and ``rnnkit eval`` in ``ocr_commands``; their
pictures in ``ocr_plots``. The guide with the measured figures: docs/ocr.md.
"""

from __future__ import annotations

from rnnkit.tasks import TaskSpec, ocr_commands, register
from rnnkit.tasks.ocr_task import build, check, default, load_alphabet, tiny

SPEC = register(
    TaskSpec(
        name="ocr",
        description="reading rendered text lines (or handwritten digit lines) with CTC",
        presets={"default": default, "tiny": tiny},
        build=build,
        check=check,
        load_vocab=load_alphabet,
        **ocr_commands.hooks(),
    )
)
