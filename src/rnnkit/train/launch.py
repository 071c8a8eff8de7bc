"""Starting or resuming a run of a task: the run directory (refused, made, locked, tidied), the
config (resolved, checked, saved), the resume checks, the rollback of a run refused before it
started, the trainer, and the end of the run. Task-agnostic: the task is a ``TaskSpec``
(``rnnkit.tasks.base``), and what is particular to it (its checks, its vocabulary on resume,
its report) comes from the spec."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.train.run_dir import (
    LAST,
    absolute_data_path,
    completion_message,
    lock_run_dir,
    read_saved_config,
    remove_new_files,
    run_dir_ready,
    run_is_complete,
    tidy_run_dir,
)

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped by `kill`, `timeout` or a batch scheduler
DRY_RUN = {  # one batch per split
    "train.max_steps": 1,
    "train.eval_batches": 1,
    "train.eval_every": 1,
    "train.checkpoint_every": 1,
    "train.max_minutes": 0.0,
}


def check_config(spec, cfg) -> None:
    """The task's own range checks (one-line errors), if it has them; a model too large for
    this machine's memory (before the run directory is made)."""
    from rnnkit.train.memory import check_model_memory

    if spec.check is not None:
        spec.check(cfg)
    check_model_memory(cfg)


def out_of_memory(error: BaseException) -> str | None:
    """The allocator's complaint on one line, if ``error`` is one (torch raises RuntimeError)."""
    if isinstance(error, MemoryError) or (
        isinstance(error, RuntimeError) and "can't allocate memory" in str(error)
    ):
        return " ".join(str(error).split()) or "MemoryError"
    return None


def build_task(spec, cfg, cache: Path, dist, vocab):
    """``spec.build``, with a model or data the allocator refuses as a one-line UserError."""
    try:
        return spec.build(cfg, cache, rank=dist.rank, world_size=dist.world_size, vocab=vocab)
    except (MemoryError, RuntimeError) as e:
        reason = out_of_memory(e)
        if reason is None:
            raise
        raise UserError(f"out of memory while building the {spec.name} task: {reason}") from None


def launch(spec, args, overrides: list, argv: list[str]) -> int:
    """Train ``spec``'s task as ``rnnkit train`` was asked: ``args`` holds preset, config, out,
    resume and dry_run; ``overrides`` the ``--section.key`` pairs; ``argv`` is saved with the
    config. Returns the exit status."""
    from rnnkit import __version__
    from rnnkit.config import (
        apply_overrides,
        config_from_dict,
        config_to_dict,
        resolve_config,
        save_config,
    )
    from rnnkit.train.checkpoint import load_checkpoint
    from rnnkit.train.distributed import Distributed
    from rnnkit.train.trainer import STOP, Trainer

    dist = Distributed.from_environment()
    config_class = type(spec.presets[spec.default_preset]())
    vocab, created, lock = None, False, None
    try:
        if args.resume:
            if not args.out:
                raise UserError("--resume needs --out, the run directory to continue")
            run_dir = Path(args.out)
            has_checkpoint = run_dir_ready(run_dir, resume=True)
            if dist.is_main:
                lock = lock_run_dir(run_dir)
                has_checkpoint = run_dir_ready(run_dir, resume=True)  # as the lock found it
        else:
            preset = args.preset or spec.default_preset
            if preset not in spec.presets:
                raise UserError(
                    f"unknown preset {preset!r} for {spec.name}; presets: {', '.join(spec.presets)}"
                )
            cfg = resolve_config(spec.presets[preset](), args.config, overrides)
            check_config(spec, cfg)  # before the run directory is made
            stamp = time.strftime("%Y%m%d-%H%M%S")
            run_dir = Path(args.out) if args.out else Path("runs") / f"{spec.name}-{stamp}"
            created, has_checkpoint = not run_dir.exists(), False
            if dist.is_main:
                if (run_dir / ".lock").is_file():  # an rnnkit run: is it running now?
                    lock = lock_run_dir(run_dir)
                run_dir_ready(run_dir, resume=False)
                lock = lock or lock_run_dir(run_dir)
                tidy_run_dir(run_dir)
        if args.resume and has_checkpoint:
            ckpt = load_checkpoint(run_dir / LAST, require=("task", "config", "vocab", "trainer"))
            if ckpt.meta.get("task") != spec.name:
                raise UserError(f"{run_dir} is a {ckpt.meta.get('task')!r} run, not {spec.name!r}")
            cfg = apply_overrides(config_from_dict(config_class, ckpt.meta["config"]), overrides)
            vocab = spec.vocab_from_checkpoint(ckpt.meta["vocab"])
        elif args.resume:  # stopped before its first checkpoint: start again, as configured
            cfg = apply_overrides(
                config_from_dict(config_class, read_saved_config(run_dir)), overrides
            )
            if dist.is_main:
                print(f"{run_dir} holds no checkpoint yet: starting it again from step 0")
        cfg = absolute_data_path(cfg)
        check_config(spec, cfg)
        if args.dry_run:
            cfg = apply_overrides(cfg, DRY_RUN)
        if not args.resume and dist.is_main:  # first, so that a run killed early can resume
            save_config(cfg, run_dir / "config.json", argv=["train", *argv])
        if args.resume and has_checkpoint and run_is_complete(ckpt.meta["trainer"], cfg.train):
            if dist.is_main:
                print(completion_message(spec.name, run_dir, ckpt.meta["trainer"], cfg.train))
            return 0
        dist.barrier()  # rank 0 has checked (and made) the run directory

        cache = run_dir / "cache" / f"rank{dist.rank}"
        present = set(run_dir.rglob("*")) if dist.is_main else set()
        try:
            task = build_task(spec, cfg, cache, dist, vocab)
            meta = {
                "task": spec.name,
                "level": task.level,
                "config": config_to_dict(cfg),
                "vocab": task.vocab.to_dict(),
                "rnnkit_version": __version__,
                "data_sizes": task.data_sizes,
            }
            # every check (a resumed checkpoint fits the model and optimiser) before any write
            trainer = Trainer(task, cfg.train, run_dir, meta, resume=has_checkpoint)
        except UserError:  # a run refused before it started leaves the directory as it was
            if not args.resume and created and dist.is_main:
                shutil.rmtree(run_dir, ignore_errors=True)
            elif dist.is_main:  # e.g. the data cache written meanwhile
                remove_new_files(run_dir, present)
            raise
        if args.resume and dist.is_main:  # every check has passed: now the run may change
            tidy_run_dir(run_dir, ckpt.meta["trainer"]["step"] if has_checkpoint else 0)
            save_config(cfg, run_dir / "config.json", argv=["train", *argv])
        if dist.is_main:
            sizes = task.data_sizes
            n_params = sum(p.numel() for p in task.model.parameters())
            print(
                f"{spec.name}: {sizes['train']:,} training and {sizes['val']:,} validation "
                f"{getattr(task, 'unit', 'tokens')}, "
                f"vocabulary {len(task.vocab)}, {n_params:,} parameters, "
                f"{dist.world_size} process(es); run directory {run_dir}"
            )
        dist.barrier()
        try:
            result = trainer.fit()
        except KeyboardInterrupt:  # the trainer saved an exact checkpoint at a step boundary
            name = "SIGTERM" if STOP.signum == signal.SIGTERM else "Ctrl-C"
            if dist.is_main:
                print(
                    f"\n{name}: stopped at step {trainer.step}; checkpoint saved. Continue with: "
                    f"rnnkit train {spec.name} --out {run_dir} --resume",
                    file=sys.stderr,
                )
            return EXIT_TERMINATED if STOP.signum == signal.SIGTERM else EXIT_INTERRUPTED
        except (MemoryError, RuntimeError) as e:  # e.g. a data.batch_size far too large
            reason = out_of_memory(e)
            if reason is None:
                raise
            kept = (run_dir / LAST).exists()
            if not kept and created and dist.is_main:  # refused before a step: leave nothing
                shutil.rmtree(run_dir, ignore_errors=True)
            where = f"; the last checkpoint in {run_dir} is intact" if kept else ""
            raise UserError(
                f"out of memory while training at step {trainer.step}{where}: {reason}"
            ) from None
        finally:
            dist.shutdown()
    finally:
        if lock is not None:
            lock.close()
    if dist.is_main:
        spec.finish_run(task, result, run_dir, args.dry_run)
    return 0
