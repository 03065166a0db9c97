"""``python -m bamco_fast.data`` command line.

``check-splits``: read the requested splits and report, for every pair, the question, (image,
question) and image overlap. Exit status 0 = no (image, question) pair is shared, 1 = leakage found,
2 = bad input.

Example (the split BaMCo's released code trains on: HF train plus the first 300 HF test rows)::

    python -m bamco_fast.data check-splits --dataset vqa-rad \\
        --root ../shared/data/vqa_rad/hf_flaviagiammarino_order --val-fraction 0 \\
        --splits "train+test[:300]" test
"""

from __future__ import annotations

import argparse
import itertools
import sys
import warnings
from dataclasses import asdict
from pathlib import Path

from .errors import DataWarning, MissingSplitError, SkipLog
from .jsonio import atomic_write_json, check_output_path
from .loading import DATASETS, DEFAULT_SEED, DEFAULT_VAL_FRACTION, LANGUAGES, LAYOUTS, load_split
from .splits import overlap_report

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.data", description="Dataset tools: check splits for leakage."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check-splits", help="report overlap between splits; exit 1 on (image, question) leakage"
    )
    check.add_argument("--dataset", required=True, choices=DATASETS)
    check.add_argument("--root", required=True, type=Path, help="the dataset's folder in its official layout")
    check.add_argument(
        "--layout", default="auto", help="file layout (default: detect); see docs/data_and_knowledge.md"
    )
    check.add_argument(
        "--image-dir", type=Path, default=None, help="image folder if not found next to the files"
    )
    check.add_argument(
        "--lang",
        default="en",
        help="question language (Slake: en or zh; the other datasets are English only); 'all' keeps every "
        "language",
    )
    check.add_argument(
        "--splits",
        nargs="+",
        default=["train", "validate", "test"],
        help="split names or expressions such as 'train+test[:300]' (default: train validate test)",
    )
    check.add_argument(
        "--val-fraction",
        type=float,
        default=DEFAULT_VAL_FRACTION,
        help="share of train images carved as validation where a dataset has none (0 = never carve)",
    )
    check.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the validation carve")
    check.add_argument(
        "--skip-missing", action="store_true", help="skip (and count) missing images and malformed entries"
    )
    check.add_argument("--json", type=Path, default=None, help="also write the report as JSON to this file")
    return parser


def _check_splits(args: argparse.Namespace) -> int:
    if args.layout not in LAYOUTS[args.dataset]:
        raise ValueError(
            f"--layout for {args.dataset} must be one of {list(LAYOUTS[args.dataset])}, got {args.layout!r}"
        )
    if args.lang != "all" and args.lang not in LANGUAGES[args.dataset]:
        raise ValueError(
            f"--lang for {args.dataset} must be one of {[*LANGUAGES[args.dataset], 'all']}, got {args.lang!r}"
        )
    repeated = sorted({s for s in args.splits if args.splits.count(s) > 1})
    if repeated:
        raise ValueError(f"--splits: expected distinct splits, got {', '.join(repeated)} more than once")
    if args.json is not None:
        check_output_path(args.json, "--json")
    skip_log = SkipLog() if args.skip_missing else None
    lang = None if args.lang == "all" else args.lang
    splits = {}
    for expr in args.splits:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", DataWarning)
                splits[expr] = load_split(
                    args.dataset,
                    args.root,
                    expr,
                    layout=args.layout,
                    image_dir=args.image_dir,
                    lang=lang,
                    val_fraction=args.val_fraction,
                    seed=args.seed,
                    skip_log=skip_log,
                )
            for warning in caught:
                print(f"note: {warning.message}")
        except MissingSplitError as exc:
            raise MissingSplitError(
                f"{exc} (check only the splits you have with --splits, e.g. --splits train validate)"
            ) from exc
        if not splits[expr]:
            raise ValueError(
                f"split {expr!r} of {args.dataset} at {args.root} has no QA pair to check "
                f"(--lang {args.lang}{', --skip-missing' if args.skip_missing else ''}); "
                "an empty split cannot show leakage"
            )
        images = len({r.image_name for r in splits[expr]})
        print(f"{expr}: {len(splits[expr])} QA, {images} images")
    reports = [overlap_report(a, splits[a], b, splits[b]) for a, b in itertools.combinations(args.splits, 2)]
    for report in reports:
        print(report.format())
    if skip_log is not None:
        print(skip_log.summary())
    if args.json is not None:
        atomic_write_json(args.json, [asdict(r) | {"leaks": r.leaks} for r in reports])
    leaking = [f"{r.a} -> {r.b}" for r in reports if r.leaks]
    if leaking:
        print(f"LEAKAGE: (image, question) pairs shared between {', '.join(leaking)}", file=sys.stderr)
        return 1
    print("no (image, question) pair is shared between splits")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bamco_fast.data ARGS``; bad input: one line and status 2 (:mod:`bamco_fast.boundary`)."""
    from ..boundary import run_command

    args = _parser().parse_args(argv)
    return run_command("data", lambda: _check_splits(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
