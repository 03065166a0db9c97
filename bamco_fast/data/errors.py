"""Error types for dataset and knowledge-source input.

Every error names the file (and line, where there is one), what was expected and what was found,
so a user can fix the input without reading the code.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "DataError",
    "DataFormatError",
    "DataWarning",
    "LayoutError",
    "MissingFileError",
    "MissingSplitError",
    "SkipLog",
]


class DataWarning(UserWarning):
    """Entries of a dataset were left out (e.g. empty answers); the message names them."""


class DataError(ValueError):
    """Base class of all input errors raised by ``bamco_fast.data`` and ``bamco_fast.knowledge``."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None) -> None:
        self.path = None if path is None else str(path)
        self.line = line
        where = ""
        if self.path is not None:
            where = self.path if line is None else f"{self.path}:{line}"
            where += ": "
        super().__init__(where + message)


class DataFormatError(DataError):
    """A file exists but its content is not in the expected format."""


class LayoutError(DataError):
    """A dataset or knowledge-base folder does not have any of the supported layouts."""


class MissingFileError(DataError, FileNotFoundError):
    """A file the input refers to (an image, an RRF table, a split file) does not exist."""


class MissingSplitError(MissingFileError):
    """The file of a requested split (e.g. Slake's ``test.json``) is not in the dataset folder."""


@dataclass
class SkipLog:
    """Counts items skipped instead of raising (``--skip-missing``, or the VQA stage's empty answers).

    ``kinds``: the problem kinds skipped (``None``: every kind); a problem of another kind still raises.
    ``examples`` keeps the first few messages of each kind so a summary can show what was skipped.
    """

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    max_examples: int = 3
    kinds: frozenset[str] | None = None

    def skips(self, kind: str) -> bool:
        """Whether a problem of ``kind`` is skipped (counted) rather than raised."""
        return self.kinds is None or kind in self.kinds

    def add(self, kind: str, message: str) -> None:
        self.counts[kind] += 1
        bucket = self.examples.setdefault(kind, [])
        if len(bucket) < self.max_examples:
            bucket.append(message)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        if not self.counts:
            return "skipped: nothing"
        lines = [f"skipped: {self.total} item(s)"]
        for kind, n in sorted(self.counts.items()):
            lines.append(f"  {kind}: {n}")
            for example in self.examples.get(kind, []):
                lines.append(f"    e.g. {example}")
        return "\n".join(lines)
