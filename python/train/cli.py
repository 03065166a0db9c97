"""Command line of the training pipeline: ``python -m bamco_fast.train <command> [options]``.

``pretrain`` trains a knowledge space (with no options: the embedded demo on the packaged VQA-RAD subset);
``vqa`` fine-tunes the knowledge-driven VQA model on a knowledge space and evaluates it once on test.
"""

from __future__ import annotations

import argparse

from . import pretrain, vqa


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.train", description="BaMCo training pipeline."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    pretrain.add_arguments(sub.add_parser("pretrain", help=pretrain.__doc__.splitlines()[0]))
    vqa.add_arguments(
        sub.add_parser("vqa", help="knowledge-driven VQA: fine-tune, select on validation, evaluate once")
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pretrain":
        return pretrain.run(args)
    if args.command == "vqa":
        return vqa.run(args)
    raise AssertionError(f"unhandled command {args.command!r}")
