"""Random-weight model folders for the benchmarks, built once and reused from a cache folder.

``$BAMCO_FAST_BENCH_CACHE`` (default ``~/.cache/bamco_fast/bench``) holds one folder per model, width and
tokenizer text set (a digest of the texts is in the name); a complete folder is reused as it is.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path


def cache_root() -> Path:
    return Path(
        os.environ.get("BAMCO_FAST_BENCH_CACHE", str(Path.home() / ".cache" / "bamco_fast" / "bench"))
    )


def _digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:12]


def random_towers_folder(texts: Sequence[str], width: str = "full") -> Path:
    """BiomedCLIP-shaped towers (:func:`bamco_fast.models.random_biomedclip.build_random_biomedclip`)
    whose WordPiece vocabulary is trained on ``texts``."""
    from bamco_fast.models.random_biomedclip import build_random_biomedclip

    suffix = "" if width == "full" else f"-{width}"
    folder = cache_root() / f"biomedclip-random{suffix}-{_digest(texts)}"
    if not (folder / "open_clip_config.json").is_file():
        build_random_biomedclip(folder, texts, width=width, seed=0, overwrite=True)
    return folder


def random_llm_folder(name: str, texts: Sequence[str], width: str = "full", dtype: str = "float32") -> Path:
    """A language model of the paper (:func:`bamco_fast.models.random_llms.build_random_llm`)."""
    from bamco_fast.models.random_llms import build_random_llm

    folder = cache_root() / f"{name}-random-{width}-{dtype}-{_digest(texts)}"
    if not (folder / "config.json").is_file():
        build_random_llm(name, folder, texts, width=width, dtype=dtype, seed=0, overwrite=True)
    return folder
