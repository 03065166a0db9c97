"""Command line of the training pipeline: ``python -m bamco_fast.train <command> [options]``."""

from __future__ import annotations

import argparse

from . import demo


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.train", description="BaMCo training pipeline."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo.add_arguments(sub.add_parser("demo", help=demo.__doc__.splitlines()[0]))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        return demo.run(demo.DemoConfig.from_args(args))
    raise AssertionError(f"unhandled command {args.command!r}")
