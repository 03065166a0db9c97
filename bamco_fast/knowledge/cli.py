"""``python -m bamco_fast.knowledge`` command line.

``build``    build a knowledge source for one dataset split and write it as a JSON list
             (atomically: an interrupted or failed run leaves no partial file);
``stats``    print the Table-1 statistics of knowledge files (ours or the published ones);
``compare``  coverage of a reference knowledge file by ours;
``export-definitions``  a knowledge file's head definitions as a JSONL knowledge base.

Exit status: 0 success, 2 bad input (checked before the work where it can be: output paths, input
files, option values), 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bamco_fast.data.errors import DataError, MissingFileError
from bamco_fast.data.jsonio import atomic_write_json, check_output_path
from bamco_fast.data.loading import DATASETS

__all__ = ["main"]


def _add_build_inputs(build: argparse.ArgumentParser) -> None:
    """``build``: the dataset split, the knowledge bases and the output file."""
    build.add_argument("--dataset", required=True, choices=DATASETS)
    build.add_argument("--root", required=True, type=Path, help="the dataset's folder in its official layout")
    build.add_argument("--split", default="train", choices=("train", "validate", "test"))
    build.add_argument(
        "--kb",
        required=True,
        action="append",
        metavar="KIND:PATH",
        help="knowledge base: umls:META_DIR, slake-kg:KG_DIR or jsonl:FILE; repeat to add definition sources "
        "(the first gives entities and relations; later ones fill missing definitions)",
    )
    build.add_argument("--out", required=True, type=Path, help="output JSON file")
    build.add_argument("--lang", default="en", help="question language (only en is supported)")
    build.add_argument("--layout", default="auto", help="dataset file layout (default: detect)")
    build.add_argument(
        "--image-dir", type=Path, default=None, help="image folder if not found next to the files"
    )
    build.add_argument(
        "--skip-missing", action="store_true", help="skip and count missing images / malformed entries"
    )


def _add_build_pipeline(build: argparse.ArgumentParser) -> None:
    """``build``: the entity pipeline (offline matcher or scispaCy with its linker)."""
    build.add_argument(
        "--pipeline",
        default="auto",
        choices=("auto", "offline", "scispacy"),
        help="entity pipeline: scispacy needs a spaCy model (--spacy-model, default en_core_sci_sm); "
        "auto uses it when installed",
    )
    build.add_argument(
        "--spacy-model",
        default="en_core_sci_sm",
        help="scispacy pipeline: spaCy model package or folder (default en_core_sci_sm)",
    )
    build.add_argument(
        "--linker",
        default="tfidf",
        choices=("tfidf", "exact"),
        help="scispacy pipeline: scispaCy's TF-IDF EntityLinker over the knowledge base (default) or "
        "exact name/alias lookup",
    )
    build.add_argument(
        "--linker-threshold", type=float, default=0.7, help="tfidf linker: minimum similarity (0.7)"
    )
    build.add_argument(
        "--linker-index",
        type=Path,
        default=None,
        help="tfidf linker: folder caching the knowledge base's index (rebuilt when the names change)",
    )
    build.add_argument(
        "--overlap",
        default="all",
        choices=("all", "longest"),
        help="offline matcher: keep nested matches (all) or only the longest ones",
    )


def _add_build_records(build: argparse.ArgumentParser) -> None:
    """``build``: which records are kept (definitions, relation caps and filters, UMLS sources)."""
    build.add_argument(
        "--missing-definition",
        default="auto",
        choices=("auto", "drop", "keep"),
        help="records whose head has no definition: drop, or keep with def_head null; auto (default) "
        "keeps them when the first knowledge base has no definitions for some concepts by design "
        "(slake-kg) and drops them otherwise (umls, jsonl)",
    )
    build.add_argument(
        "--max-relations",
        type=int,
        default=None,
        help="cap on relations per head and QA pair, >= 1 (default: no cap)",
    )
    build.add_argument(
        "--drop-relation", action="append", default=[], help="extra relation label to drop (repeatable)"
    )
    build.add_argument(
        "--umls-sab", action="append", default=None, help="UMLS source vocabulary (default SNOMEDCT_US)"
    )
    build.add_argument(
        "--umls-def-sab",
        action="append",
        default=None,
        help="UMLS definition sources in priority order (default NCI, MSH)",
    )


def _add_build_split_and_report(build: argparse.ArgumentParser) -> None:
    """``build``: the validation split, the seed and the optional comparison with a reference file."""
    build.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="validation share carved from train where a dataset has none",
    )
    build.add_argument("--seed", type=int, default=0)
    build.add_argument(
        "--compare", type=Path, default=None, help="reference knowledge file: print our coverage of it"
    )
    build.add_argument(
        "--image-map", type=Path, default=None, help="image-id map of the reference (BaMCo VQA-RAD files)"
    )
    build.add_argument("--no-progress", action="store_true")


def _add_stats(sub: argparse._SubParsersAction) -> None:
    """The ``stats`` sub-command: Table-1 statistics of knowledge files."""
    stats = sub.add_parser("stats", help="Table-1 statistics of knowledge files")
    stats.add_argument("files", nargs="+", type=Path)
    stats.add_argument("--image-map", type=Path, default=None)


def _add_compare(sub: argparse._SubParsersAction) -> None:
    """The ``compare`` sub-command: coverage of a reference knowledge file by ours."""
    compare = sub.add_parser("compare", help="coverage of a reference knowledge file by ours")
    compare.add_argument("--ours", required=True, type=Path)
    compare.add_argument("--reference", required=True, type=Path)
    compare.add_argument("--image-map", type=Path, default=None, help="image-id map of the reference")


def _add_export_definitions(sub: argparse._SubParsersAction) -> None:
    """The ``export-definitions`` sub-command: head definitions as a JSONL knowledge base."""
    export = sub.add_parser(
        "export-definitions", help="write a knowledge file's head definitions as a JSONL knowledge base"
    )
    export.add_argument("file", type=Path)
    export.add_argument("--out", required=True, type=Path)


def _parser() -> argparse.ArgumentParser:
    """The ``python -m bamco_fast.knowledge`` parser with its four sub-commands."""
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.knowledge", description="Build and inspect knowledge sources."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build a knowledge source from a dataset split")
    _add_build_inputs(build)
    _add_build_pipeline(build)
    _add_build_records(build)
    _add_build_split_and_report(build)
    _add_stats(sub)
    _add_compare(sub)
    _add_export_definitions(sub)
    return parser


def _open_kbs(args: argparse.Namespace) -> list:
    from .kb_base import open_knowledge_base, parse_kb_spec

    kbs = []
    for spec in args.kb:
        kind, _ = parse_kb_spec(spec)
        options: dict = {}
        if kind == "umls":
            options = {"progress": not args.no_progress}
            if args.umls_sab:
                options["sabs"] = tuple(args.umls_sab)
            if args.umls_def_sab:
                options["def_sabs"] = tuple(args.umls_def_sab)
        kbs.append(open_knowledge_base(spec, **options))
    return kbs


def _check_inputs(*pairs: tuple[str, Path | None]) -> None:
    """Each given ``(flag, path)`` must be an existing file."""
    for flag, path in pairs:
        if path is not None and not Path(path).is_file():
            what = "a folder" if Path(path).is_dir() else "missing"
            raise MissingFileError(f"{flag} must be an existing file, got {str(path)!r} ({what})")


def _build(args: argparse.Namespace) -> int:
    from .builder import BuildConfig, build_knowledge
    from .stats import format_stats_table, knowledge_stats

    # Everything that can be checked without the work is checked first.
    check_output_path(args.out, "--out")
    _check_inputs(("--compare", args.compare), ("--image-map", args.image_map))
    if args.split == "test":
        print(
            "warning: a knowledge source built from the test split holds the entities of its answers; "
            "giving it to a model evaluated on that split leaks the answers (see docs/data_and_knowledge.md)",
            file=sys.stderr,
        )

    config = BuildConfig(
        dataset=args.dataset,
        root=args.root,
        split=args.split,
        lang=args.lang,
        layout=args.layout,
        image_dir=args.image_dir,
        skip_missing=args.skip_missing,
        pipeline=args.pipeline,
        overlap=args.overlap,
        spacy_model=args.spacy_model,
        linker=args.linker,
        linker_threshold=args.linker_threshold,
        linker_index=args.linker_index,
        missing_definition=args.missing_definition,
        max_relations=args.max_relations,
        drop_relations=frozenset(args.drop_relation),
        val_fraction=args.val_fraction,
        seed=args.seed,
        progress=not args.no_progress,
    )
    result = build_knowledge(config, _open_kbs(args))
    atomic_write_json(args.out, [r.to_json() for r in result.records])
    print(f"wrote {len(result.records)} records to {args.out}")
    if not result.records:
        print(
            f"warning: no knowledge record was built ({result.qa_with_entities} of {result.qa_pairs} QA "
            "pairs had a linked entity; a record needs a head with a relation that passes the filters "
            "below); check the first --kb, --pipeline and the filters",
            file=sys.stderr,
        )
    print(
        f"entity pipeline: {result.pipeline}; QA pairs: {result.qa_pairs}, with linked entities: {result.qa_with_entities}"
    )
    print(
        f"heads without a definition: {result.missing_definition} (--missing-definition {args.missing_definition})"
    )
    if result.filtered:
        print("filtered: " + ", ".join(f"{k} {v}" for k, v in sorted(result.filtered.items())))
    if args.skip_missing:
        print(result.skipped.summary())
    print(format_stats_table({f"{args.dataset} {args.split}": knowledge_stats(result.records)}))
    if args.compare is not None:
        _print_coverage(result.records, args.compare, args.image_map)
    return 0


def _print_coverage(ours, reference: Path, image_map: Path | None) -> None:
    from .published import load_image_map, read_knowledge_file
    from .stats import coverage

    mapping = load_image_map(image_map) if image_map else None
    print(coverage(ours, read_knowledge_file(reference, image_map=mapping)).format())


def _stats(args: argparse.Namespace) -> int:
    from .published import load_image_map, read_knowledge_file
    from .stats import format_stats_table, knowledge_stats

    _check_inputs(*(("FILE", p) for p in args.files), ("--image-map", args.image_map))
    mapping = load_image_map(args.image_map) if args.image_map else None
    rows = {p.name: knowledge_stats(read_knowledge_file(p, image_map=mapping)) for p in args.files}
    print(format_stats_table(rows))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .published import read_knowledge_file

    _check_inputs(("--ours", args.ours), ("--reference", args.reference), ("--image-map", args.image_map))
    _print_coverage(read_knowledge_file(args.ours), args.reference, args.image_map)
    return 0


def _export(args: argparse.Namespace) -> int:
    import json

    from bamco_fast.data.jsonio import atomic_write_text

    from .published import definition_concepts, read_knowledge_file

    check_output_path(args.out, "--out")
    _check_inputs(("FILE", args.file))
    concepts = definition_concepts(read_knowledge_file(args.file))
    atomic_write_text(args.out, "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in concepts))
    print(f"wrote {len(concepts)} definitions to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    commands = {"build": _build, "stats": _stats, "compare": _compare, "export-definitions": _export}
    try:
        return commands[args.command](args)
    except (DataError, ValueError, ImportError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
