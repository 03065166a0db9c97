"""``python -m bamco_fast.evaluate``: score predictions under every Med-VQA protocol.

Sub-commands:

* ``score PREDICTIONS.jsonl [MORE.jsonl ...] [--dataset slake --root R --split test] [--out REPORT.json]``:
  one table per file (protocol, n, score, 95% interval), the no-model baselines beside it when a
  dataset is given, and mean/std over files when several are given (e.g. seeds).
* ``baselines --dataset D --root R --split S``: the no-model baselines alone, under every protocol.
* ``table [LABEL=]REPORT.json ... [--baselines]``: one Markdown table of several runs' reports (scores
  in %), optionally with the no-model baselines each report carries.
* ``report RUN [--html PAGE.html] [--split S]``: a self-contained HTML page of a VQA run's answers (every
  question with its image, verdicts, retrieved entity and intra-class images; the scores on top).

Exit status: 0 success, 2 bad input (the message names the file, line or argument).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _add_dataset_args(parser: argparse.ArgumentParser, required: bool) -> None:
    from ..data.loading import DATASETS

    group = parser.add_argument_group("dataset (ground truth, open/closed labels, baselines)")
    group.add_argument(
        "--dataset", choices=DATASETS, required=required, help="dataset the predictions answer"
    )
    group.add_argument("--root", type=Path, required=required, help="the dataset's folder")
    group.add_argument("--split", default="test", help="split the predictions answer (default: test)")
    group.add_argument("--layout", default="auto", help="dataset layout (see docs/data_and_knowledge.md)")
    group.add_argument(
        "--lang", default="en", help="question language; 'all' keeps every language (default: en)"
    )
    group.add_argument("--val-fraction", type=float, default=0.1, help="share of train carved as validate")
    group.add_argument("--data-seed", type=int, default=0, help="seed of the carved validation split")
    group.add_argument(
        "--train-split", default="train", help="split the baselines learn from (default: train)"
    )


def _add_score_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--closed-rule",
        choices=("dataset", "yesno"),
        default="dataset",
        help="open/closed from the dataset label (default) or the published rule: closed iff answer is yes/no",
    )
    parser.add_argument(
        "--normalize",
        default=None,
        help="normalisation steps, comma-separated, or 'none' "
        "(default: lower,punctuation,articles,whitespace)",
    )
    parser.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples (0: no intervals)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    parser.add_argument("--no-text-metrics", action="store_true", help="skip BLEU-1 and ROUGE-1")
    parser.add_argument(
        "--bertscore-model", default=None, help="LOCAL model folder for BERTScore (never downloaded)"
    )
    parser.add_argument("--bertscore-layers", type=int, default=None, help="BERTScore hidden-state layer")
    parser.add_argument("--out", type=Path, default=None, help="write the JSON report here (atomically)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.evaluate", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    score = sub.add_parser("score", help="score predictions files under every protocol")
    score.add_argument("predictions", nargs="+", type=Path, help="predictions JSONL file(s); several = seeds")
    score.add_argument("--qid-field", default="qid", help="name of the question-id field (default: qid)")
    score.add_argument("--prediction-field", default="prediction", help="name of the answer field")
    score.add_argument(
        "--missing",
        choices=("error", "skip"),
        default="error",
        help="dataset questions without a prediction: error (default) or score only the predicted",
    )
    score.add_argument("--no-baselines", action="store_true", help="do not compute the no-model baselines")
    _add_dataset_args(score, required=False)
    _add_score_args(score)
    base = sub.add_parser("baselines", help="no-model baselines of a dataset split under every protocol")
    _add_dataset_args(base, required=True)
    _add_score_args(base)
    base.add_argument(
        "--write-predictions",
        type=Path,
        default=None,
        metavar="DIR",
        help="also write each baseline's predictions to DIR/<baseline>.jsonl (scorable with 'score')",
    )
    table = sub.add_parser("table", help="a Markdown table of several runs' report JSON files")
    table.add_argument(
        "reports",
        nargs="+",
        metavar="[LABEL=]REPORT",
        help="report JSON files; label default: the run folder",
    )
    table.add_argument(
        "--baselines",
        action="store_true",
        help="after each group of reports on the same questions, a row per no-model baseline",
    )
    table.add_argument("--out", type=Path, default=None, help="also write the table here (atomically)")
    page = sub.add_parser("report", help="a self-contained HTML page of a VQA run's answers")
    page.add_argument("run", type=Path, metavar="RUN", help="run folder of python -m bamco_fast.train vqa")
    page.add_argument(
        "--html", type=Path, default=None, help="the page to write (default: RUN/report_<split>.html)"
    )
    page.add_argument("--split", default=None, help="evaluated split (default: the run's only one)")
    page.add_argument(
        "--page-size", type=int, default=50, help="questions per page when it opens: 25, 50, 100 or 200"
    )
    return parser


def _cmd_report(args: argparse.Namespace) -> int:
    from ..data.jsonio import check_output_path
    from .html_report import ReportPageOptions, find_split, write_report_html

    if args.page_size not in (25, 50, 100, 200):
        raise ValueError(f"--page-size: expected 25, 50, 100 or 200, got {args.page_size}")
    split = find_split(args.run, args.split)
    out = args.html if args.html is not None else args.run / f"report_{split}.html"
    check_output_path(out, "--html")
    path = write_report_html(args.run, split, out=out, options=ReportPageOptions(page_size=args.page_size))
    print(f"report page written to {path}")
    return 0


def _cmd_table(args: argparse.Namespace) -> int:
    from ..metrics.table import format_markdown_table, table_rows

    pairs = []
    for item in args.reports:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).parent.name or item, item
        pairs.append((label, path))
    text = format_markdown_table(table_rows(pairs, baselines=args.baselines))
    print(text)
    if args.out is not None:
        from ..data.jsonio import atomic_write_text

        atomic_write_text(args.out, text + "\n")
    return 0


#: The most bootstrap resamples (1000 give intervals to about a tenth of a point).
MAX_BOOTSTRAP = 100_000


def _check_args(args: argparse.Namespace) -> None:
    """Fail on bad arguments before any long work."""
    for path in getattr(args, "predictions", []):
        if not path.is_file():
            raise ValueError(f"predictions file not found: {path}")
    if (args.dataset is None) != (args.root is None):
        raise ValueError("--dataset and --root go together (give both, or neither)")
    if args.root is not None and not args.root.is_dir():
        raise ValueError(f"--root must be the dataset's folder, got {str(args.root)!r} (not a folder)")
    if not 0 <= args.n_boot <= MAX_BOOTSTRAP:
        raise ValueError(f"--n-boot: expected an integer in [0, {MAX_BOOTSTRAP}], got {args.n_boot}")
    if args.bertscore_model is not None:
        from ..metrics.bertscore import check_model_folder

        check_model_folder(args.bertscore_model)  # a clear error now, not after scoring
    from ..metrics.normalize import parse_steps

    parse_steps(args.normalize)
    if getattr(args, "out", None) is not None:
        from ..data.jsonio import check_output_path

        check_output_path(args.out, "--out")


def _load(args: argparse.Namespace, split: str):
    from ..data import load_split

    return load_split(
        args.dataset,
        args.root,
        split,
        layout=args.layout,
        lang=None if args.lang == "all" else args.lang,
        val_fraction=args.val_fraction,
        seed=args.data_seed,
        check_images=False,
    )


def _score_kwargs(args: argparse.Namespace) -> dict:
    return {
        "closed_rule": args.closed_rule,
        "seed": args.seed,
        "n_boot": args.n_boot,
        "normalization": args.normalize,
        "text_metrics": not args.no_text_metrics,
        "bertscore_model": args.bertscore_model,
        "bertscore_layers": args.bertscore_layers,
    }


def _dataset_info(args: argparse.Namespace) -> dict | None:
    if args.dataset is None:
        return None
    return {"name": args.dataset, "root": str(args.root), "split": args.split, "lang": args.lang}


def _baselines(args: argparse.Namespace, records, qids: set[str] | None) -> dict:
    if args.split == args.train_split:
        print(f"(baselines skipped: the scored split is the training split {args.train_split!r})")
        return {}
    from ..metrics import score_baselines

    train = _load(args, args.train_split)
    kwargs = {**_score_kwargs(args), "bertscore_model": None}
    reports = score_baselines(train, records, qids=qids, **kwargs)
    for report in reports.values():
        report.info["baseline"]["train_split"] = f"{args.dataset} {args.train_split}"
    return reports


def _write(path: Path | None, value: dict) -> None:
    if path is None:
        return
    from ..data.jsonio import atomic_write_text

    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=1) + "\n")
    print(f"report written to {path}")


def _joined_runs(args: argparse.Namespace, records) -> list[tuple[object, list, object]]:
    """``(path, rows, join)`` of every predictions file, joined with the dataset when one is given."""
    from ..metrics import join_with_dataset, read_predictions

    where = f"{args.dataset} {args.split}" if args.dataset else ""
    out = []
    for path in args.predictions:
        rows = read_predictions(path, qid_field=args.qid_field, prediction_field=args.prediction_field)
        join = None
        if records is not None:
            join = join_with_dataset(rows, records, missing=args.missing, source=str(path), where=where)
            rows = join.predictions
        out.append((path, rows, join))
    return out


def _common_questions(runs: list[tuple[object, list, object]]) -> tuple[set[str], str | None]:
    """The question ids every file answers, and a note when the files answer different questions."""
    sets = [{p.qid for p in rows} for _, rows, _ in runs]
    common = set.intersection(*sets)
    if all(s == common for s in sets):
        return common, None
    dropped = sorted(set.union(*sets) - common)
    return common, (
        f"the files answer different questions: every file, the mean and the baselines are scored on the "
        f"{len(common)} questions all {len(runs)} files answer ({len(dropped)} left out, e.g. qid {dropped[0]!r})"
    )


def _cmd_score(args: argparse.Namespace) -> int:
    from ..metrics import aggregate_runs, format_side_by_side, score
    from ..metrics.report import format_aggregate

    records = _load(args, args.split) if args.dataset else None
    runs = _joined_runs(args, records)
    scored_qids, note = _common_questions(runs)
    if not scored_qids:
        raise ValueError("predictions: the files have no question in common; nothing to score")
    reports = []
    for path, rows, join in runs:
        report = score([p for p in rows if p.qid in scored_qids], **_score_kwargs(args))
        report.info["file"] = str(path)
        report.info["dataset"] = _dataset_info(args)
        report.info["questions"] = {"scored": len(scored_qids), "common_to_files": len(runs)}
        if note:
            report.notes.append(note)
        if join is not None:
            report.info["join"] = join.to_json()
            if join.answer_mismatches:
                report.notes.append(
                    f"{len(join.answer_mismatches)} answer(s) in the file differ from the dataset's; the dataset's "
                    f"were used (e.g. qid {join.answer_mismatches[0]!r})"
                )
        reports.append(report)
        print(f"== {path}")
        print(report.format_table())
        print()
    baselines = {}
    if records is not None and not args.no_baselines:
        try:
            baselines = _baselines(args, records, scored_qids)
        except (ValueError, FileNotFoundError) as exc:  # the scores stand; say why the baselines are absent
            print(f"(baselines skipped: {exc})", file=sys.stderr)
    if baselines:
        columns = {"model" if len(reports) == 1 else "model[0]": reports[0], **baselines}
        print(f"== beside no-model baselines (learnt from {args.dataset} {args.train_split}), score %")
        print(format_side_by_side(columns))
        print()
    out: dict = reports[0].to_json() if len(reports) == 1 else {}
    if len(reports) > 1:
        summary = aggregate_runs(reports)
        print(f"== mean and std over {len(reports)} files")
        print(format_aggregate(summary))
        out = {
            "metrics": summary,
            "closed_rule": reports[0].closed_rule,
            "normalization": list(reports[0].normalization),
            "runs": [r.to_json() for r in reports],
        }
    if baselines:
        out["baselines"] = {name: r.to_json() for name, r in baselines.items()}
    _write(args.out, out)
    return 0


def _cmd_baselines(args: argparse.Namespace) -> int:
    from ..metrics import format_side_by_side

    if args.split == args.train_split:
        raise ValueError(
            f"--split and --train-split are both {args.split!r}: baselines must be scored on another split"
        )
    records = _load(args, args.split)
    reports = _baselines(args, records, None)
    if args.write_predictions is not None:
        from ..metrics import baseline_predictions, write_predictions

        train = _load(args, args.train_split)
        for name, rows in baseline_predictions(train, records).items():
            write_predictions(args.write_predictions / f"{name}.jsonl", rows)
        print(f"baseline predictions written to {args.write_predictions}/")
    print(f"== {args.dataset} {args.split}: no-model baselines learnt from {args.train_split}, score %")
    print(next(iter(reports.values())).header())
    print(format_side_by_side(reports))
    seen = reports["question_prior"].info["baseline"]["question_seen_in_train"]
    print(f"question_prior: question text seen in train for {seen} of {len(records)} questions")
    _write(
        args.out, {"dataset": _dataset_info(args), "baselines": {n: r.to_json() for n, r in reports.items()}}
    )
    return 0


def _run(args) -> int:
    if args.command == "table":
        return _cmd_table(args)
    if args.command == "report":
        return _cmd_report(args)
    _check_args(args)
    if args.command == "score":
        return _cmd_score(args)
    return _cmd_baselines(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv`` (default ``sys.argv[1:]``); returns the exit status (one line and 2
    for bad input: :mod:`bamco_fast.boundary`)."""
    from ..boundary import run_command

    args = _parser().parse_args(argv)
    return run_command("evaluate", lambda: _run(args))
