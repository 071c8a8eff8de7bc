"""The ``rnnkit`` command. ``main(argv) -> int`` so tests call it in-process.

    rnnkit train TASK [--preset NAME] [--config FILE.toml] [--data PATH] [--out DIR] [--resume]
                      [--dry-run] [--section.key VALUE ...]
    rnnkit sample RUN [--prime TEXT] [--temperature T] [--top-k K] [--top-p P] [--greedy] ...
    rnnkit score RUN TEXT [TEXT ...]
    rnnkit predict RUN TEXT [TEXT ...] [--beam K] [--n-best N] [--sample] [--attention PNG] ...
    rnnkit eval RUN [--split test] [--beam K] [--limit N] [--out FILE.json] [--ensemble RUN ...]
    rnnkit plot RUN
    rnnkit demo
    rnnkit lab NAME [options]

A user's mistake (a bad file, option or checkpoint) ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import shutil
import signal
import sys
import time
from pathlib import Path

from rnnkit.errors import UserError

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
EXIT_TERMINATED = 143  # 128 + SIGTERM: stopped by `kill`, `timeout` or a batch scheduler


# ---- train --------------------------------------------------------------------------------
def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnnkit train TASK", add_help=False)
    p.add_argument("--preset", help="a named preset of the task (default: the task's default)")
    p.add_argument("--config", help="a TOML file of options ([section] key = value)")
    p.add_argument("--data", help="the training text (same as --data.path)")
    p.add_argument("--out", help="the run directory (default: runs/TASK-DATE-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--dry-run", action="store_true", help="one batch per split, then stop")
    p.add_argument("-h", "--help", action="store_true", help="list every option and exit")
    return p


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


def train_help(spec) -> str:
    from rnnkit.config import describe

    lines = [
        f"usage: rnnkit train {spec.name} [options] [--section.key VALUE ...]",
        "",
        spec.description,
        "",
        "options:",
    ]
    for action in train_parser()._actions:
        flags = ", ".join(action.option_strings)
        lines.append(f"  {flags:22} {action.help}")
    lines += ["", f"presets: {', '.join(spec.presets)} (default: {spec.default_preset})", ""]
    lines.append(f"settings (--section.key VALUE; defaults of preset '{spec.default_preset}'):")
    for key, type_name, default, help_text in describe(spec.presets[spec.default_preset]()):
        lines.append(f"  --{key} {type_name:10} {help_text} (default: {default})")
    return "\n".join(lines)


def read_saved_config(run_dir: Path) -> dict:
    """The config a run directory's config.json holds (``save_config``'s format)."""
    import json

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


def cmd_train(argv: list[str]) -> int:
    from rnnkit import __version__
    from rnnkit.config import (
        apply_overrides,
        config_from_dict,
        config_to_dict,
        parse_cli_overrides,
        resolve_config,
        save_config,
    )
    from rnnkit.data.text import Vocab
    from rnnkit.tasks import get_task
    from rnnkit.train.checkpoint import load_checkpoint
    from rnnkit.train.distributed import Distributed
    from rnnkit.train.trainer import (
        LAST,
        STOP,
        Trainer,
        lock_run_dir,
        run_dir_ready,
        tidy_run_dir,
    )

    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            from rnnkit.tasks import registry

            print("usage: rnnkit train TASK [options]; rnnkit train TASK --help lists them")
            for spec in registry().values():
                print(f"  {spec.name:10} {spec.description}")
            return 0
        raise UserError("train needs a task name first, e.g. rnnkit train charlm")
    spec = get_task(argv[0])
    overrides, rest = parse_cli_overrides(argv[1:])
    args, unknown = train_parser().parse_known_args(rest)
    if args.help:
        print(train_help(spec))
        return 0
    if unknown:
        raise UserError(f"unknown argument {unknown[0]!r} (see rnnkit train {spec.name} --help)")
    if args.data is not None:
        overrides.append(("data.path", args.data))
    dist = Distributed.from_environment()

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
            cfg = config_from_dict(type(spec.presets[spec.default_preset]()), ckpt.meta["config"])
            cfg = apply_overrides(cfg, overrides)
            saved = ckpt.meta["vocab"]  # a language model's Vocab; other tasks read their own
            vocab = Vocab.from_dict(saved) if ckpt.meta.get("level") in ("char", "word") else saved
        elif args.resume:  # stopped before its first checkpoint: start again, as configured
            cfg = config_from_dict(
                type(spec.presets[spec.default_preset]()), read_saved_config(run_dir)
            )
            cfg = apply_overrides(cfg, overrides)
            if dist.is_main:
                print(f"{run_dir} holds no checkpoint yet: starting it again from step 0")
        cfg = absolute_data_path(cfg)
        check_config(spec, cfg)
        if args.dry_run:  # one batch per split
            cfg = apply_overrides(cfg, {
                "train.max_steps": 1, "train.eval_batches": 1, "train.eval_every": 1,
                "train.checkpoint_every": 1, "train.max_minutes": 0.0,
            })  # fmt: skip
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
                "task": spec.name, "level": task.level, "config": config_to_dict(cfg),
                "vocab": task.vocab.to_dict(), "rnnkit_version": __version__,
                "data_sizes": task.data_sizes,
            }  # fmt: skip
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
    if dist.is_main and hasattr(task, "report"):  # tasks other than language models
        print(task.report(result) + f"; checkpoints in {run_dir}")
    elif dist.is_main:
        uniform = math.log(len(task.vocab))  # the loss of a uniform guess
        if not result["loss"] <= 2 * uniform:
            raise UserError(
                f"training diverged: validation loss {result['loss']:.4g} nats at step "
                f"{result['step']}, worse than a uniform guess ({uniform:.3f}); lower --train.lr "
                f"(checkpoints in {run_dir})"
            )
        unit = "bits/char" if task.level == "char" else "bits/word"
        bits = result.get("bpc", result.get("bits", math.nan))
        print(
            f"done: step {result['step']}, validation loss {result['loss']:.4f} nats "
            f"({bits:.3f} {unit}, perplexity {result['ppl']:.2f}), best {result['best']:.4f}, "
            f"{result['seconds'] / 60:.1f} min; checkpoints in {run_dir}"
            + (f"; {result['skipped']} non-finite step(s) skipped" if result["skipped"] else "")
        )
        if not args.dry_run:
            print("\nsample (temperature 0.8):")
            print(sample_text(run_dir, prime=None, length=400, temperature=0.8, seed=1))
    return 0


# ---- sample, score, plot ------------------------------------------------------------------
def check_seed(seed: int | None) -> None:
    from rnnkit.train.trainer import MAX_SEED

    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise UserError(f"--seed must be in [0, 2**63 - 1], got {seed}")


def sample_text(run: Path, prime: str | None, length: int, **choose) -> str:
    import torch

    from rnnkit.decoding import sample_sequence
    from rnnkit.tasks.runs import load_run

    loaded = load_run(run)
    vocab, model = loaded.vocab, loaded.model
    if prime is None or prime == "":
        prime_ids = loaded.start_ids()
        shown = ""
    else:
        prime_ids = vocab.encode(prime).tolist()
        shown = prime
    seed = choose.pop("seed", None)
    generator = torch.Generator().manual_seed(seed) if seed is not None else None
    ids = sample_sequence(model.step, None, prime_ids, length, generator=generator, **choose)
    return shown + vocab.decode(ids)


def cmd_sample(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rnnkit sample", description="Generate text from a run.")
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--prime", default=None, help="text to start from (default: a line start)")
    p.add_argument("--length", type=int, default=500, help="tokens to generate (default: 500)")
    p.add_argument("--temperature", type=float, default=1.0, help="softmax temperature")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: mass p")
    p.add_argument("--greedy", action="store_true", help="always take the likeliest token")
    p.add_argument("--seed", type=int, default=None, help="random seed for a repeatable sample")
    a = p.parse_args(argv)
    if a.length < 1:
        raise UserError(f"--length must be at least 1, got {a.length}")
    check_seed(a.seed)
    print(
        sample_text(
            Path(a.run), a.prime, a.length, temperature=a.temperature, top_k=a.top_k,
            top_p=a.top_p, greedy=a.greedy, seed=a.seed,
        )
    )  # fmt: skip
    return 0


def cmd_score(argv: list[str]) -> int:
    from rnnkit.decoding import sequence_log_prob
    from rnnkit.tasks.runs import load_run

    p = argparse.ArgumentParser(
        prog="rnnkit score", description="Log-probability of texts under a trained model."
    )
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("texts", nargs="+", help="the texts to score")
    a = p.parse_args(argv)
    loaded = load_run(Path(a.run))
    unit = "char" if loaded.level == "char" else "token"
    rows = []
    for text in a.texts:
        ids = loaded.start_ids() + loaded.vocab.encode(text).tolist()
        total, _ = sequence_log_prob(loaded.model.step, None, ids)
        n = len(ids) - len(loaded.start_ids())
        if n == 0:
            raise UserError(f"nothing to score in {text!r}: give a non-empty text")
        rows.append((total, text))
        unknown = loaded.vocab.unknown(text) if loaded.level == "word" else []
        note = (
            f"  ({len(unknown)} word(s) scored as <unk>: {', '.join(unknown)})" if unknown else ""
        )
        print(
            f"{total:10.3f} nats  {-total / math.log(2) / n:6.3f} bits/{unit}  "
            f"ppl {math.exp(-total / n):9.2f}  {text!r}{note}"
        )
    if len(rows) > 1:
        best = max(rows)[1]
        print(f"most likely (highest total log-probability): {best!r}")
    return 0


def cmd_plot(argv: list[str]) -> int:
    from rnnkit.plots import plot_run

    p = argparse.ArgumentParser(prog="rnnkit plot", description="Draw a run's curves as PNG.")
    p.add_argument("run", help="a run directory")
    p.add_argument("--out", default=None, help="where to write the PNGs (default: the run)")
    a = p.parse_args(argv)
    for path in plot_run(Path(a.run), None if a.out is None else Path(a.out)):
        print(path)
    return 0


# ---- predict, eval (sequence-to-sequence runs) -------------------------------------------
def decode_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("run", help="a run directory or a .safetensors checkpoint")
    p.add_argument("--beam", type=int, default=0, help="beam search of this width (0: greedy)")
    p.add_argument("--alpha", type=float, default=0.0, help="beam length penalty exponent")
    p.add_argument("--sample", action="store_true", help="sample instead of the likeliest")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature")
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest")
    p.add_argument("--top-p", type=float, default=None, help="nucleus sampling: mass p")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--max-len", type=int, default=0, help="longest output (0: the run's)")
    p.add_argument("--batch-size", type=int, default=64, help="inputs decoded at once")
    p.add_argument("--ensemble", nargs="+", default=None, metavar="RUN",
                   help="more runs of the same task and vocabulary: decode with all of them, "
                   "averaging their next-token probabilities")  # fmt: skip
    return p


def load_decoder(a):
    """The run (or, with --ensemble, the runs) that ``predict`` and ``eval`` decode with."""
    from rnnkit.tasks.seq2seq_task import load_seq2seq_ensemble, load_seq2seq_run

    if a.ensemble:
        return load_seq2seq_ensemble([Path(a.run), *map(Path, a.ensemble)])
    return load_seq2seq_run(Path(a.run))


def decode_options(a, loaded, n_best: int = 1) -> dict:
    check_seed(a.seed)
    if a.beam < 0:
        raise UserError(f"--beam must be >= 0, got {a.beam}")
    if not math.isfinite(a.alpha):
        raise UserError(f"--alpha must be a finite number, got {a.alpha}")
    if a.beam and a.sample:
        raise UserError("--beam and --sample exclude each other")
    if a.max_len < 0 or a.batch_size < 1:
        raise UserError("--max-len must be >= 0 and --batch-size >= 1")
    method = "beam" if a.beam else "sample" if a.sample else "greedy"
    if loaded.cfg.train.threads:  # the run's thread count (1 for the small seq2seq presets)
        import torch

        torch.set_num_threads(loaded.cfg.train.threads)
    return {
        "method": method, "beam": max(a.beam, 1), "n_best": n_best, "alpha": a.alpha,
        "temperature": a.temperature, "top_k": a.top_k, "top_p": a.top_p, "seed": a.seed,
        "max_len": a.max_len or loaded.cfg.decode.max_len, "batch_size": a.batch_size,
    }  # fmt: skip


def cmd_predict(argv: list[str]) -> int:
    from rnnkit.plots import plot_attention
    from rnnkit.tasks.seq2seq_task import attention_map, predict

    p = decode_parser("rnnkit predict", "Outputs of a sequence-to-sequence run for inputs.")
    p.add_argument("inputs", nargs="+", help="the input texts")
    p.add_argument("--n-best", type=int, default=1, help="beam search: show the N best")
    p.add_argument("--attention", default=None, help="write the attention map(s) to this PNG")
    a = p.parse_args(argv)
    if a.attention and a.ensemble:
        raise UserError("--attention draws one model's weights: leave out --ensemble")
    if a.attention:
        from rnnkit.plots import check_writable

        check_writable(a.attention, "--attention")
    loaded = load_decoder(a)
    if a.n_best > 1 and not a.beam:
        raise UserError("--n-best needs --beam K with K >= N")
    options = decode_options(a, loaded, a.n_best)
    outputs = predict(loaded.model, loaded.vocab, a.inputs, **options)
    for i, (text, outs) in enumerate(zip(a.inputs, outputs, strict=True)):
        unknown = loaded.vocab.source.unknown(text)
        note = f"  (unknown to the model, read as <unk>: {' '.join(unknown)})" if unknown else ""
        if len(outs) == 1:
            print(f"{text}\t{outs[0][0]}{note}")
        else:
            print(f"{text}{note}")
            for rank, (out, score) in enumerate(outs, 1):
                print(f"  {rank}. {out}\t(score {score:.4f})")
        if a.attention:
            found = attention_map(loaded.model, loaded.vocab, text, outs[0][0])
            if found is None:
                raise UserError(f"--attention: {loaded.path} was trained without attention")
            path = Path(a.attention)
            if len(a.inputs) > 1:
                path = path.with_name(f"{path.stem}_{i + 1}{path.suffix}")
            weights, xs, ys = found
            print(plot_attention(weights, path, source=xs, output=ys, title=f"{text!r}"))
    return 0


def eval_output(a) -> Path:
    """The results JSON of ``eval``: --out (an existing file, or its .png, only with --force),
    else the run's own eval_SPLIT.json."""
    from rnnkit.plots import check_writable

    if not a.out:
        run = Path(a.run)
        base = run if run.is_dir() else run.parent
        suffix = f"_ensemble{len(a.ensemble) + 1}" if a.ensemble else ""
        return base / f"eval_{a.split}{suffix}.json"
    out = Path(a.out)
    check_writable(out, "--out")
    if out.suffix.lower() == ".png":
        raise UserError(f"--out {out} is the results JSON and its plot goes beside it as .png: "
                        "give a .json name")  # fmt: skip
    for path in (out, out.with_suffix(".png")):
        if path.exists() and not a.force:
            raise UserError(f"--out: {path} exists; pass --force to replace it, or choose "
                            "another --out")  # fmt: skip
    return out


def cmd_eval(argv: list[str]) -> int:
    import json

    from rnnkit.config import atomic_write
    from rnnkit.plots import plot_by_length
    from rnnkit.tasks.seq2seq_task import evaluate_examples

    p = decode_parser("rnnkit eval", "Scores of a sequence-to-sequence run on a held-out split.")
    p.add_argument("--split", default="test", choices=("test", "val"), help="(default: test)")
    p.add_argument("--limit", type=int, default=0, help="only the first N examples (0: all)")
    p.add_argument("--out", default=None, help="results JSON, its plot beside it as .png "
                   "(default: RUN/eval_SPLIT.json, replaced on each eval)")  # fmt: skip
    p.add_argument("--force", action="store_true",
                   help="let --out replace an existing file (and its .png)")  # fmt: skip
    p.add_argument("--show", type=int, default=5, help="print this many wrong outputs")
    a = p.parse_args(argv)
    if a.limit < 0:
        raise UserError(f"--limit must be >= 0, got {a.limit}")
    if a.show < 0:
        raise UserError(f"--show must be >= 0, got {a.show}")
    out = eval_output(a)  # refused before the decoding, not after it
    loaded = load_decoder(a)
    options = decode_options(a, loaded)
    examples = loaded.recipe.examples(loaded.cfg)[a.split]
    if a.limit:
        examples = examples[: a.limit]
    scorer = loaded.recipe.scorer()
    result, hyps = evaluate_examples(
        loaded.model, loaded.vocab, examples, scorer, progress=True, **options
    )
    decoding = {k: v for k, v in options.items() if k != "batch_size"}
    result = {"task": loaded.name, "checkpoint": str(loaded.path), "split": a.split,
              "decoding": decoding, **result}  # fmt: skip
    if a.ensemble:
        result["ensemble"] = [str(loaded.path), *a.ensemble]
    names = scorer.names
    print(f"{loaded.name} {a.split}: {len(examples)} examples, {options['method']} decoding")
    print("  " + ", ".join(f"{n} {result[n]:.4f}" for n in names))
    print("  by source length: " + "; ".join(
        f"{b} (n={r['examples']}): " + ", ".join(f"{n} {r[n]:.3f}" for n in names)
        for b, r in result["by_source_length"].items()))  # fmt: skip
    wrong = [(ex, h) for ex, h in zip(examples, hyps, strict=True) if h not in ex.references()]
    for ex, h in wrong[: a.show]:
        print(f"  wrong: {ex.source!r} -> {h!r} (expected {ex.target!r})")
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    png = plot_by_length(
        {loaded.name: {b: r[names[0]] for b, r in result["by_source_length"].items()}},
        out.with_suffix(".png"), metric=names[0],
        counts={b: r["examples"] for b, r in result["by_source_length"].items()},
        title=f"{loaded.name} ({a.split}): {names[0]} by source length",
    )  # fmt: skip
    print(f"results: {out}, {png}")
    return 0


# ---- demo ---------------------------------------------------------------------------------
def cmd_demo(argv: list[str]) -> int:
    from rnnkit.demo import DemoConfig, print_report, run_demo

    p = argparse.ArgumentParser(
        prog="rnnkit demo",
        description="Train a small recurrent network on generated data (the delayed-echo task).",
    )
    for f in dataclasses.fields(DemoConfig):
        p.add_argument(
            f"--{f.name.replace('_', '-')}", type=type(f.default), default=f.default,
            help=f"(default: {f.default})",
        )  # fmt: skip
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    a = p.parse_args(argv)
    cfg = DemoConfig(**{f.name: getattr(a, f.name) for f in dataclasses.fields(DemoConfig)})
    print_report(cfg, run_demo(cfg, progress=not a.quiet))
    return 0


# ---- bench --------------------------------------------------------------------------------
def cmd_bench(argv: list[str]) -> int:
    from rnnkit.bench import BENCHMARKS

    if not argv:
        raise UserError(
            f"bench needs a benchmark name, e.g. rnnkit bench speed; benchmarks: "
            f"{', '.join(BENCHMARKS)}"
        )
    if argv[0] in ("-h", "--help"):
        print("usage: rnnkit bench NAME [options]; rnnkit bench NAME --help lists them")
        for name, (_, text) in BENCHMARKS.items():
            print(f"  {name:8} {text}")
        return 0
    if argv[0] not in BENCHMARKS:
        raise UserError(f"unknown benchmark {argv[0]!r}; benchmarks: {', '.join(BENCHMARKS)}")
    return BENCHMARKS[argv[0]][0](argv[1:])


# ---- lab ----------------------------------------------------------------------------------
def cmd_lab(argv: list[str]) -> int:
    from rnnkit.lab import run

    return run(argv)


COMMANDS = {
    "train": (cmd_train, "train a task: rnnkit train TASK [options] (train --help lists tasks)"),
    "sample": (cmd_sample, "generate text from a trained language model"),
    "score": (cmd_score, "log-probability and bits per token of texts"),
    "predict": (cmd_predict, "outputs of a sequence-to-sequence run (dates, g2p, translate)"),
    "eval": (cmd_eval, "held-out scores of a sequence-to-sequence run, by source length"),
    "plot": (cmd_plot, "draw a run's loss, bits and gradient-norm curves as PNG"),
    "demo": (cmd_demo, "train a small LSTM on generated data and show gradient flow"),
    "lab": (cmd_lab, "experiments with plots: rnnkit lab --help lists them"),
    "bench": (cmd_bench, "benchmarks: rnnkit bench speed [--quick] (tokens/s against torch.nn)"),
}


def main(argv: list[str] | None = None) -> int:
    from rnnkit import __version__

    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: rnnkit COMMAND [options]   (rnnkit COMMAND --help for each)\n")
        print("Recurrent neural networks, with backpropagation through time derived by hand.\n")
        print("commands:")
        for name, (_, text) in COMMANDS.items():
            print(f"  {name:8} {text}")
        return 0
    if argv[0] == "--version":
        print(f"rnnkit {__version__}")
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(
            f"rnnkit: error: unknown command {command!r}; commands: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    try:
        return COMMANDS[command][0](rest)
    except UserError as error:
        print(f"rnnkit {command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"\nrnnkit {command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
