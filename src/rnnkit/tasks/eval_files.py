"""Where ``rnnkit eval RUN`` writes its results: one rule for every task.

The results are a JSON file with its picture beside it (the same name, ``.png``). Without
``--out`` they go into the run, ``RUN/STEM_SPLIT.json``, replaced on each eval (they are the
run's own, recomputed). ``--out FILE.json`` names them anywhere else; a file that exists there
(or its ``.png``) is refused unless ``--force`` is given, so an eval never overwrites work of
the user's by accident.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rnnkit.errors import UserError


def add_out_options(
    p: argparse.ArgumentParser, picture: str | None = "its plot", default: str = "eval_SPLIT"
) -> None:
    """``--out`` and ``--force``, worded the same in every task's eval."""
    beside = f", {picture} beside it as .png" if picture else ""
    p.add_argument(
        "--out",
        default=None,
        help=f"results JSON{beside} (default: RUN/{default}.json, replaced on each eval)",
    )
    p.add_argument(
        "--force", action="store_true", help="let --out replace an existing file (and its .png)"
    )


def eval_output(
    run: str | Path, out: str | None, split: str | None, force: bool, stem: str = "eval"
) -> Path:
    """The results JSON of an eval (see the module's docstring); checked before any work.

    Args:
        run: the run directory or checkpoint file given on the command line.
        out: ``--out``, or None for the run's own ``STEM_SPLIT.json`` (``STEM.json`` when
            ``split`` is None).
        force: ``--force``: let ``out`` replace existing files.
    """
    from rnnkit.plots import check_writable

    if out is None:
        run = Path(run)
        base = run if run.is_dir() else run.parent
        return base / (f"{stem}_{split}.json" if split else f"{stem}.json")
    path = Path(out)
    if path.suffix.lower() != ".json":
        raise UserError(
            f"--out {path}: give the results JSON's name (.json); its picture goes beside it "
            "as .png"
        )
    check_writable(path, "--out")
    for p in (path, path.with_suffix(".png")):
        if p.exists() and not force:
            raise UserError(
                f"--out: {p} exists; pass --force to replace it, or choose another --out"
            )
    return path
