"""The ``rnnkit`` command. ``main(argv) -> int`` so tests call it in-process.

    rnnkit train TASK [--preset NAME] [--config FILE.toml] [--data PATH] [--out DIR] [--resume]
                      [--dry-run] [--section.key VALUE ...]
    rnnkit sample RUN [--prime TEXT] [--temperature T] [--top-k K] [--top-p P] [--greedy] ...
    rnnkit score RUN TEXT [TEXT ...]
    rnnkit predict RUN INPUT [INPUT ...] [options of RUN's task: rnnkit predict RUN --help]
    rnnkit eval RUN [--split test] [options of RUN's task: rnnkit eval RUN --help]
    rnnkit plot RUN
    rnnkit demo
    rnnkit lab NAME [options]

A user's mistake (a bad file, option or checkpoint) ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rnnkit.errors import UserError
from rnnkit.train.launch import EXIT_INTERRUPTED, EXIT_TERMINATED  # noqa: F401 - the exit codes

EXIT_USER_ERROR = 2


# ---- train --------------------------------------------------------------------------------
def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rnnkit train TASK", add_help=False)
    p.add_argument("--preset", help="a named preset of the task (default: the task's default)")
    p.add_argument("--config", help="a TOML file of options ([section] key = value)")
    p.add_argument("--data", help="the task's data: a file or directory (same as --data.path)")
    p.add_argument("--out", help="the run directory (default: runs/TASK-DATE-TIME)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--dry-run", action="store_true", help="one batch per split, then stop")
    p.add_argument("-h", "--help", action="store_true", help="list every option and exit")
    return p


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


def cmd_train(argv: list[str]) -> int:
    from rnnkit.config import parse_cli_overrides
    from rnnkit.tasks import get_task, registry
    from rnnkit.train.launch import launch

    if not argv or argv[0].startswith("-"):
        if argv and argv[0] in ("-h", "--help"):
            print("usage: rnnkit train TASK [options]; rnnkit train TASK --help lists them")
            for spec in registry().values():
                print(f"  {spec.name:10} {spec.description}")
            return 0
        example = next(iter(registry()))
        raise UserError(f"train needs a task name first, e.g. rnnkit train {example}")
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
    return launch(spec, args, overrides, argv)


# ---- plot ---------------------------------------------------------------------------------
def cmd_plot(argv: list[str]) -> int:
    from rnnkit.plots import plot_run

    p = argparse.ArgumentParser(prog="rnnkit plot", description="Draw a run's curves as PNG.")
    p.add_argument("run", help="a run directory")
    p.add_argument("--out", default=None, help="where to write the PNGs (default: the run)")
    a = p.parse_args(argv)
    for path in plot_run(Path(a.run), None if a.out is None else Path(a.out)):
        print(path)
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
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=f.default,
            help=f"(default: {f.default})",
        )
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


# ---- export ---------------------------------------------------------------------------------
def cmd_export(argv: list[str]) -> int:
    try:
        from rnnkit.export.onnx import cmd_export as export
    except ModuleNotFoundError as e:  # onnx is an optional dependency
        raise UserError(f"rnnkit export needs the {e.name} package: pip install onnx") from None
    return export(argv)


# ---- serve ----------------------------------------------------------------------------------
def cmd_serve(argv: list[str]) -> int:
    try:
        from rnnkit.serve.command import cmd_serve as serve
    except ModuleNotFoundError as e:  # fastapi and uvicorn are optional dependencies
        raise UserError(
            f"rnnkit serve needs the {e.name} package: pip install fastapi uvicorn"
        ) from None
    return serve(argv)


BUILT_IN = {
    "train": (cmd_train, "train a task: rnnkit train TASK [options] (train --help lists tasks)"),
    "plot": (cmd_plot, "draw a run's loss, bits and gradient-norm curves as PNG"),
    "demo": (cmd_demo, "train a small LSTM on generated data and show gradient flow"),
    "lab": (cmd_lab, "experiments with plots: rnnkit lab --help lists them"),
    "export": (cmd_export, "a trained run's inference graph as ONNX: rnnkit export RUN --out F"),
    "serve": (cmd_serve, "trained runs over HTTP: rnnkit serve RUN [RUN ...] --port 8000"),
    "bench": (cmd_bench, "benchmarks: rnnkit bench speed [--quick] (tokens/s against torch.nn)"),
}


def commands() -> dict:
    """Every subcommand: ``train``, then those the tasks add (``TaskSpec.commands``), then the
    rest; name -> (function(argv) -> exit status, help line)."""
    from rnnkit.tasks import task_commands

    names = dict(BUILT_IN)
    train = {"train": names.pop("train")}
    return {**train, **task_commands(), **names}


def __getattr__(name: str):
    if name == "COMMANDS":  # the table as it was, built from the task registry
        return commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv: list[str] | None = None) -> int:
    from rnnkit import __version__

    argv = sys.argv[1:] if argv is None else list(argv)
    COMMANDS = commands()  # noqa: N806
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
