"""``python -m bamco_fast.inference merge --run RUN --out DIR``: a standalone copy of a trained VQA run.

The copy's ``llm/`` holds the language model with the run's LoRA adapters merged into its weights
(written shard by shard: :func:`bamco_fast.models.lora.write_merged`), loadable alone by
``AutoModelForCausalLM.from_pretrained``; the projectors, tokenizer and the knowledge-space reference are
copied. ``python -m bamco_fast.predict --run RUN --model DIR`` answers with it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.inference", description=__doc__.splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    merge = sub.add_parser(
        "merge", help="write the run's LLM with its adapters merged, as a standalone folder"
    )
    merge.add_argument("--run", required=True, type=Path, help="run folder of python -m bamco_fast.train vqa")
    merge.add_argument("--out", required=True, type=Path, help="the new folder (must not exist)")
    merge.add_argument("--knowledge-space", type=Path, default=None, help="knowledge-space run, if it moved")
    return parser


def _merge(args: argparse.Namespace) -> int:
    from ..boundary import UsageError
    from .run_folder import load_run

    if args.out.exists():
        raise UsageError(f"--out: expected a folder that does not exist yet, got {args.out}")
    start = time.perf_counter()
    loaded = load_run(args.run, knowledge_space=args.knowledge_space, device="cpu")
    folder = loaded.model.merge(args.out, overwrite=False)
    size = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
    print(f"merged model written to {folder} ({size / 2**30:.2f} GiB, {time.perf_counter() - start:.1f} s)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with ``argv``; one line and status 2 for bad input (:mod:`bamco_fast.boundary`)."""
    from ..boundary import run_command

    args = _parser().parse_args(argv)
    return run_command("inference merge", lambda: _merge(args))
