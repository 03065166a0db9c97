"""Command line of the training pipeline: ``python -m bamco_fast.train <stage> [options]``.

``pretrain`` trains a knowledge space (with no options: the embedded demo on the packaged VQA-RAD subset);
``vqa`` fine-tunes the knowledge-driven VQA model on a knowledge space and evaluates it once. Both stages
take the same flags (:mod:`bamco_fast.train.core.entry`).
"""

from __future__ import annotations

import argparse

from .core.entry import add_arguments, run_stage
from .pretrain import STAGE as PRETRAIN
from .vqa import STAGE as VQA

STAGES = {stage.name: stage for stage in (PRETRAIN, VQA)}
_HELP = {
    "pretrain": "knowledge-space pretraining: train, select on validation matching, write the matching table",
    "vqa": "knowledge-driven VQA: fine-tune, select on validation, evaluate once",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.train", description="BaMCo training pipeline."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name, stage in STAGES.items():
        add_arguments(sub.add_parser(name, help=_HELP[name], description=_HELP[name]), stage)
    return parser


def main(argv: list[str] | None = None) -> int:
    """``python -m bamco_fast.train ARGS``; returns the exit code (see :mod:`bamco_fast.train.core.entry`)."""
    args = build_parser().parse_args(argv)
    return run_stage(STAGES[args.command], args)
