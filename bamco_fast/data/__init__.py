"""Medical VQA datasets (Slake 1.0, VQA-RAD, PathVQA) read into one record type with honest splits.

Entry points: :func:`load_split` and :class:`VQARecord`; ``python -m bamco_fast.data check-splits``.
The modules here use the standard library only (plus ``pyarrow`` for Hugging Face parquet files), but
importing this package first imports :mod:`bamco_fast`, which imports torch.
"""

from . import errors
from .errors import *  # noqa: F403  (every error type, as listed in errors.__all__)
from .loading import DATASETS, LAYOUTS, has_native_validation, load_split
from .pathvqa import read_pathvqa
from .record import VQARecord, derive_answer_type, normalize_question
from .slake import read_slake
from .splits import SplitOverlap, carve_validation, overlap_report, parse_split_expr
from .vqa_rad import read_vqa_rad

__all__ = [
    *errors.__all__,
    "DATASETS",
    "LAYOUTS",
    "SplitOverlap",
    "VQARecord",
    "carve_validation",
    "derive_answer_type",
    "has_native_validation",
    "load_split",
    "normalize_question",
    "overlap_report",
    "parse_split_expr",
    "read_pathvqa",
    "read_slake",
    "read_vqa_rad",
]
