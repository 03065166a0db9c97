"""Folders of the paper's models with seeded random weights, in the layout their real loading paths read.

    python -m bamco_fast.models.random_weights NAME --out DIR [--width full|tiny]
        [--dtype float32|bfloat16] [--seed N] [--texts SOURCE ...]

======================  ==========================================================  ===========
NAME                    folder (loaded with)                                        parameters
======================  ==========================================================  ===========
``biomedclip``          open_clip hub layout: ViT-B/16 at 224 px + PubMedBERT-base   195.9 M
                        text tower, context 256, embedding 512
                        (``load_towers(f"local-dir:{DIR}")``)
``llama-3.2-1b``        Hugging Face folder (``AutoModelForCausalLM`` /              1,235.8 M
                        ``AutoTokenizer.from_pretrained(DIR)``)
``llama-3.2-3b``        the same                                                    3,212.7 M
``gpt2-xl``             the same                                                    1,557.6 M
======================  ==========================================================  ===========

Architectures, sources and the tokenizer conventions are documented in
:mod:`bamco_fast.models.random_biomedclip`, :mod:`bamco_fast.models.random_llms` and
:mod:`bamco_fast.models.random_tokenizers`. ``--width tiny`` builds the same family with the same
tokenizer and vocabulary size but a trunk of width 64 (seconds to build; for tests and CI).

Tokenizers are trained on the ``--texts`` sources (:mod:`bamco_fast.models.tokenizer_texts`: a text file,
or a dataset folder whose training questions and answers are read; several may be given); without
``--texts``, on the packaged demo data's training questions and answers. ``--dtype`` (default float32)
applies to the language models; BiomedCLIP is written in float32. The folder is built under a temporary
name next to ``DIR`` and renamed into place; ``DIR`` must not exist or be an empty folder.

Bad arguments print one line ``error: ...`` to stderr and exit with status 2 before anything is written.
On success the command prints the parameter count, the size on disk and the build time.
"""

from __future__ import annotations

import argparse
import json
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..boundary import UsageError
from .random_biomedclip import build_random_biomedclip
from .random_llms import DTYPES, LLM_NAMES, WIDTHS, build_random_llm

if TYPE_CHECKING:
    from typing_extensions import TypedDict, Unpack

    class FolderOptions(TypedDict, total=False):
        """The keywords every random-weight builder takes (``**options: Unpack[FolderOptions]``)."""

        width: str
        seed: int
        overwrite: bool


__all__ = ["MODEL_NAMES", "build_random_weights", "folder_bytes", "folder_parameter_count", "main"]

MODEL_NAMES: tuple[str, ...] = ("biomedclip", *LLM_NAMES)


def build_random_weights(
    name: str,
    folder: Path | str,
    texts: Sequence[str],
    *,
    dtype: str | torch.dtype = "float32",
    **options: Unpack[FolderOptions],
) -> Path:
    """Write the random-weight folder of ``name`` (one of :data:`MODEL_NAMES`) and return it (absolute).

    Arguments (``dtype``, and ``width``, ``seed``, ``overwrite``) as
    :func:`bamco_fast.models.random_llms.build_random_llm`; for ``"biomedclip"`` the dtype must be float32
    (:func:`bamco_fast.models.random_biomedclip.build_random_biomedclip`).
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"name: expected one of {list(MODEL_NAMES)}, got {name!r}")
    if name == "biomedclip":
        if dtype not in ("float32", torch.float32):
            raise ValueError(f"dtype: biomedclip is written in float32 only, got {dtype!r}")
        return build_random_biomedclip(folder, texts, **options)
    return build_random_llm(name, folder, texts, dtype=dtype, **options)


def _safetensors_shapes(path: Path) -> list[list[int]]:
    """Shapes of the tensors in one safetensors file, read from its header (8-byte length + JSON)."""
    with path.open("rb") as handle:
        (length,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(length))
    return [entry["shape"] for key, entry in header.items() if key != "__metadata__"]


def folder_parameter_count(folder: Path | str) -> int:
    """Number of values stored in the ``*.safetensors`` files under ``folder`` (a tied embedding is
    stored, and counted, once)."""
    total = 0
    for path in sorted(Path(folder).rglob("*.safetensors")):
        for shape in _safetensors_shapes(path):
            count = 1
            for size in shape:
                count *= int(size)
            total += count
    return total


def folder_bytes(folder: Path | str) -> int:
    """Total size in bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


class _UsageError(UsageError):
    """A bad command-line argument; its message is printed as ``error: <message>``."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m bamco_fast.models.random_weights",
        description="Write a folder of one of the paper's models with seeded random weights.",
    )
    parser.add_argument("name", metavar="NAME", help=f"one of {', '.join(MODEL_NAMES)}")
    parser.add_argument("--out", required=True, metavar="DIR", help="output folder (new or empty)")
    parser.add_argument("--width", default="full", help="full (the real sizes, default) or tiny")
    parser.add_argument("--dtype", default="float32", help="float32 (default) or bfloat16")
    parser.add_argument("--seed", default="0", help="seed of the random weights (default 0)")
    parser.add_argument(
        "--texts",
        nargs="+",
        action="extend",
        metavar="SOURCE",
        help="tokenizer training texts: a text file (one text a line), a dataset folder (its training "
        "questions and answers) or DATASET=FOLDER; default: the packaged demo data",
    )
    return parser


@dataclass(frozen=True)
class _Request:
    name: str
    out: Path
    width: str
    dtype: str
    seed: int
    texts: tuple[str, ...]
    sources: tuple[str, ...]


def _expect(what: str, value: str, choices: Sequence[str]) -> str:
    if value not in choices:
        raise _UsageError(f"{what}: expected one of {', '.join(choices)}; got {value!r}")
    return value


def _check_out(out: str) -> Path:
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise _UsageError(f"--out: expected a new or empty folder; got {out!r}, an existing file")
    if path.is_dir() and any(path.iterdir()):
        raise _UsageError(f"--out: expected a new or empty folder; got {out!r}, a folder that is not empty")
    return path


def _read_sources(sources: Sequence[str] | None) -> tuple[tuple[str, ...], tuple[str, ...]]:
    from .tokenizer_texts import demo_texts, read_texts

    texts: list[str] = []
    descriptions: list[str] = []
    for source in sources or [None]:
        try:
            read = demo_texts() if source is None else read_texts(source)
        except (OSError, ValueError) as exc:
            message = " ".join(str(exc).split())
            raise _UsageError(
                f"--texts: expected a text file or a dataset folder; got {source!r}: {message}"
            ) from None
        texts += read.texts
        descriptions.append(f"{len(read.texts):,} from {read.description}")
    return tuple(texts), tuple(descriptions)


def _parse(argv: Sequence[str] | None) -> _Request:
    args = _parser().parse_args(argv)
    name = _expect("NAME", args.name, MODEL_NAMES)
    width = _expect("--width", args.width, WIDTHS)
    dtype = _expect("--dtype", args.dtype, tuple(DTYPES))
    if name == "biomedclip" and dtype != "float32":
        raise _UsageError(f"--dtype: expected float32 for biomedclip (its towers are float32); got {dtype!r}")
    if not args.seed.isdigit():
        raise _UsageError(f"--seed: expected an integer >= 0; got {args.seed!r}")
    out = _check_out(args.out)
    texts, sources = _read_sources(args.texts)
    return _Request(name, out, width, dtype, int(args.seed), texts, sources)


def _report(request: _Request, folder: Path, seconds: float) -> str:
    parameters = folder_parameter_count(folder)
    size = folder_bytes(folder)
    return "\n".join(
        [
            f"built {request.name} (width {request.width}, {request.dtype}, seed {request.seed}) in {folder}",
            f"  parameters: {parameters:,} ({parameters / 1e6:,.1f} M)",
            f"  on disk: {size / 1e9:.2f} GB ({size:,} bytes)",
            f"  build time: {seconds:.1f} s",
            f"  tokenizer texts: {'; '.join(request.sources)}",
        ]
    )


def _build(argv: list[str] | None) -> int:
    request = _parse(argv)
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    start = time.perf_counter()
    try:
        folder = build_random_weights(
            request.name,
            request.out,
            request.texts,
            width=request.width,
            dtype=request.dtype,
            seed=request.seed,
        )
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    print(_report(request, folder, time.perf_counter() - start))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point (see the module docstring); returns the exit status (one line and 2 for bad
    input: :mod:`bamco_fast.boundary`)."""
    from ..boundary import run_command

    return run_command("random_weights", lambda: _build(argv))


if __name__ == "__main__":
    raise SystemExit(main())
