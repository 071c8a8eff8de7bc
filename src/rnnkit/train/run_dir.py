"""Run directories: refuse to overwrite a run, require one to resume, lock it against a second
process, and tidy what a killed process left behind."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.files import atomic_write

LAST, BEST = "last.safetensors", "best.safetensors"


def started_without_checkpoint(run_dir: Path) -> bool:
    """A run directory whose run was stopped before its first checkpoint: it has the lock file
    and config.json that a run writes first (or one of them), and neither checkpoint."""
    return (
        ((run_dir / "config.json").is_file() or (run_dir / ".lock").is_file())
        and not (run_dir / LAST).exists()
        and not (run_dir / BEST).exists()
    )


def run_dir_ready(run_dir: Path, resume: bool) -> bool:
    """Refuse to overwrite a run; require one to resume. One-line errors.

    A run stopped before its first checkpoint has nothing to lose: ``--resume`` starts it again
    from step 0, and so does a fresh start on the same ``--out``.

    Returns:
        True if there is a checkpoint to resume from.
    """
    last = run_dir / LAST
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} is a file: choose another --out")
    if resume:
        if last.exists():
            return True
        if not started_without_checkpoint(run_dir):
            raise UserError(f"--resume: no checkpoint at {last} to resume from")
        if not (run_dir / "config.json").is_file():
            raise UserError(
                f"--resume: {run_dir} was stopped before it saved its config: start it again "
                "without --resume"
            )
        return False
    if run_dir.exists() and any(run_dir.iterdir()) and not started_without_checkpoint(run_dir):
        raise UserError(
            f"run directory {run_dir} exists and is not empty: pass --resume to continue it, "
            "or choose another --out"
        )
    try:
        os.makedirs(run_dir, exist_ok=True)
    except OSError as e:  # a file where a parent directory should be, no permission, ...
        raise UserError(f"cannot create the run directory {run_dir}: {e.strerror}") from None
    return False


def lock_run_dir(run_dir: Path):
    """Take the advisory lock ``run_dir/.lock`` (``fcntl.flock``) for as long as the returned
    file stays open: a second process training into the same run directory is refused.

    Returns:
        The open lock file (close it to release), or None where flock does not exist.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        return None
    try:
        f = open(run_dir / ".lock", "a")  # held open for the run's life
    except OSError as e:
        raise UserError(f"cannot lock the run directory {run_dir}: {e.strerror}") from None
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UserError(
            f"run directory {run_dir} is in use by another rnnkit process: wait for it to end, "
            "or choose another --out"
        ) from None
    return f


def tidy_run_dir(run_dir: Path, step: int = 0) -> None:
    """Under the lock, once every check has passed, before training from ``step``: remove the
    temporary files of a process killed while writing, and the log lines of steps after
    ``step`` (a killed attempt's, which the resumed run writes again); from step 0, the whole
    log and the TensorBoard files."""
    for tmp in run_dir.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
    log = run_dir / "log.jsonl"
    if not step:
        log.unlink(missing_ok=True)
        shutil.rmtree(run_dir / "tensorboard", ignore_errors=True)
    elif log.is_file():
        kept = []
        for line in log.read_text(encoding="utf-8").splitlines(keepends=True):
            with contextlib.suppress(ValueError, TypeError, KeyError):
                if line.endswith("\n") and json.loads(line)["step"] <= step:
                    kept.append(line)
        text = "".join(kept)
        atomic_write(log, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def read_saved_config(run_dir: Path) -> dict:
    """The config a run directory's config.json holds (``save_config``'s format)."""
    path = run_dir / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))["config"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"cannot read the saved config {path}: {e}") from None


def remove_new_files(run_dir: Path, present: set[Path]) -> None:
    """Remove what appeared in ``run_dir`` since ``present`` was listed (deepest first)."""
    for path in sorted(set(run_dir.rglob("*")) - present, reverse=True):
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() else path.unlink()


def absolute_data_path(cfg):
    """``data.path`` made absolute, so that the run resumes from any working directory."""
    data = getattr(cfg, "data", None)
    path = getattr(data, "path", None)
    if not isinstance(path, str) or not path:
        return cfg
    return dataclasses.replace(
        cfg, data=dataclasses.replace(data, path=os.path.abspath(os.path.expanduser(path)))
    )


def run_is_complete(state: dict, train) -> bool:
    """A checkpoint's trainer state has spent the step budget, or the time budget."""
    spent = train.max_minutes and state.get("elapsed", 0.0) >= 60 * train.max_minutes
    return state["step"] >= train.max_steps or bool(spent)


def completion_message(task: str, run_dir: Path, state: dict, train) -> str:
    step = state["step"]
    if step >= train.max_steps:
        why, more = f"train.max_steps {train.max_steps}", f"--train.max_steps {2 * step}"
    else:
        why, more = f"train.max_minutes {train.max_minutes:g}", "a larger --train.max_minutes"
    return (
        f"{run_dir} is complete (step {step}, its budget {why} is spent): nothing to do. "
        f"To train further: rnnkit train {task} --out {run_dir} --resume {more}"
    )


def checkpoint_path(run: Path) -> Path:
    """A run directory's best checkpoint (else its last), or a checkpoint file itself."""
    if run.is_file():
        return run
    if not run.exists():
        raise UserError(f"no run at {run}: expected a run directory or a .safetensors file")
    for name in (BEST, LAST):
        if (run / name).exists():
            return run / name
    raise UserError(f"{run} holds no checkpoint ({BEST} or {LAST}): has it been trained?")
