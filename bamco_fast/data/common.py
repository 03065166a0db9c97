"""Helpers shared by the dataset readers: error-or-skip handling and image checks."""

from __future__ import annotations

from pathlib import Path

from .errors import DataError, MissingFileError, SkipLog

__all__ = ["ImageChecker", "handle_problem", "normalize_answer_type", "pick_file"]


def handle_problem(error: DataError, kind: str, skip_log: SkipLog | None) -> None:
    """Raise ``error``, or count it in ``skip_log`` when the caller asked to skip bad items."""
    if skip_log is None:
        raise error
    skip_log.add(kind, str(error))


def normalize_answer_type(value: object) -> str | None:
    """``"closed "`` -> ``"CLOSED"``; returns None when the value is not OPEN/CLOSED."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    return text if text in {"OPEN", "CLOSED"} else None


def pick_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that exists in ``folder``, or None."""
    for name in names:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


class ImageChecker:
    """Checks (once per image) that referenced image files exist.

    ``check=False`` disables the file-system checks (for callers that only need the text).
    """

    def __init__(self, image_root: Path, *, check: bool = True) -> None:
        self.image_root = image_root
        self.check = check
        self._seen: dict[str, bool] = {}

    def path_for(self, image_name: str) -> Path:
        return (self.image_root / image_name).resolve()

    def exists(self, image_name: str) -> bool:
        if not self.check:
            return True
        if image_name not in self._seen:
            self._seen[image_name] = self.path_for(image_name).is_file()
        return self._seen[image_name]

    def missing_error(self, image_name: str, source: Path, where: str) -> MissingFileError:
        return MissingFileError(
            f"image {image_name!r} referenced by {where} does not exist (looked for {self.path_for(image_name)})",
            path=source,
        )
