"""The ``rnnkit`` command. ``main(argv) -> int`` so tests call it in-process."""

from __future__ import annotations

import argparse
import dataclasses
import sys


def add_dataclass_options(parser: argparse.ArgumentParser, cls) -> None:
    for f in dataclasses.fields(cls):
        parser.add_argument(
            f"--{f.name.replace('_', '-')}",
            type=type(f.default),
            default=f.default,
            help=f"(default: {f.default})",
        )


def build_parser() -> argparse.ArgumentParser:
    from rnnkit import __version__
    from rnnkit.demo import DemoConfig

    parser = argparse.ArgumentParser(
        prog="rnnkit", description="Recurrent neural networks, with BPTT derived by hand."
    )
    parser.add_argument("--version", action="version", version=f"rnnkit {__version__}")
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser(
        "demo",
        help="train a small LSTM to echo a bit stream with a delay, then show gradient flow",
        description="Train a small recurrent network on generated data (the delayed-echo task).",
    )
    add_dataclass_options(demo, DemoConfig)
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "demo":
            from rnnkit.demo import DemoConfig, print_report, run_demo

            names = [f.name for f in dataclasses.fields(DemoConfig)]
            cfg = DemoConfig(**{k: getattr(args, k) for k in names})
            print_report(cfg, run_demo(cfg, progress=not args.quiet))
    except ValueError as error:
        print(f"rnnkit {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
