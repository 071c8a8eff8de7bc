"""Run ``rnnkit`` with one fault injected at a known step: the fault tests' tool.

    python tests/fault_driver.py FAULT STEP [rnnkit arguments ...]

The fault is patched into this process only; the library has no test hook. FAULT is one of

    kill                SIGKILL during step STEP (after its backward pass, before its update)
    int, term           SIGINT / SIGTERM to itself at the same moment (Ctrl-C, `kill`)
    kill-in-checkpoint  SIGKILL halfway through writing last.safetensors at step STEP: the
                        temporary file is left half written, as a kill during the write leaves it

Deterministic, unlike a signal sent after a sleep: the fault lands at STEP on any machine.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from rnnkit.cli import main
from rnnkit.train import checkpoint, trainer

SIGNALS = {"kill": signal.SIGKILL, "int": signal.SIGINT, "term": signal.SIGTERM}


def inject(fault: str, at: int) -> None:
    if fault == "kill-in-checkpoint":
        real_save_file = checkpoint.save_file

        def save_file(tensors, filename, metadata=None):
            real_save_file(tensors, filename, metadata=metadata)
            step = json.loads(metadata["meta"]).get("trainer", {}).get("step")
            if step == at and "optim" in metadata:  # last.safetensors, not best
                os.truncate(filename, os.path.getsize(filename) // 2)
                os.kill(os.getpid(), signal.SIGKILL)

        checkpoint.save_file = save_file
        return
    real_clip = trainer.Trainer._clip

    def _clip(self):
        norm = real_clip(self)
        if self.step + 1 == at:
            os.kill(os.getpid(), SIGNALS[fault])
        return norm

    trainer.Trainer._clip = _clip


if __name__ == "__main__":
    inject(sys.argv[1], int(sys.argv[2]))
    sys.exit(main(sys.argv[3:]))
