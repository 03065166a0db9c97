"""Helpers shared by the dataset readers: error-or-skip handling and image checks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .errors import DataError, MissingFileError, SkipLog

__all__ = ["ImageChecker", "handle_problem", "normalize_answer_type", "pick_file", "wrong_text_fields"]


def handle_problem(error: DataError, kind: str, skip_log: SkipLog | None) -> None:
    """Raise ``error``, or count it in ``skip_log`` when the caller asked to skip problems of this ``kind``."""
    if skip_log is None or not skip_log.skips(kind):
        raise error
    skip_log.add(kind, str(error))


def normalize_answer_type(value: object) -> str | None:
    """``"closed "`` -> ``"CLOSED"``; returns None when the value is not OPEN/CLOSED."""
    if not isinstance(value, str):
        return None
    text = value.strip().upper()
    return text if text in {"OPEN", "CLOSED"} else None


def wrong_text_fields(item: dict, keys: tuple[str, ...]) -> str | None:
    """Describe the fields of ``item`` among ``keys`` that are not strings (``None`` when all are).

    A JSON ``null`` answer or a numeric question is a malformed entry, not the text "None" or "12345".
    """
    bad = [f"{k}={item[k]!r} ({type(item[k]).__name__})" for k in keys if not isinstance(item[k], str)]
    return ", ".join(bad) if bad else None


def pick_file(folder: Path, names: tuple[str, ...]) -> Path | None:
    """The first of ``names`` that exists in ``folder``, or None."""
    for name in names:
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


class ImageChecker:
    """Finds (once per image) the files that image names refer to.

    ``image_root`` is one folder, or several searched in order (an image name is relative to the first
    folder that holds it). ``check=False`` disables the file-system checks (for callers that only need
    the text).
    """

    def __init__(self, image_root: Path | Sequence[Path], *, check: bool = True) -> None:
        roots = (image_root,) if isinstance(image_root, (str, Path)) else tuple(image_root)
        if not roots:
            raise ValueError("ImageChecker needs at least one image folder")
        self.image_roots: tuple[Path, ...] = tuple(Path(r) for r in roots)
        self.image_root = self.image_roots[0]
        self.check = check
        self._found: dict[str, Path | None] = {}

    def _candidates(self, image_name: str) -> list[Path]:
        return [(root / image_name).resolve() for root in self.image_roots]

    def _lookup(self, image_name: str) -> Path | None:
        if image_name not in self._found:
            self._found[image_name] = next((c for c in self._candidates(image_name) if c.is_file()), None)
        return self._found[image_name]

    def path_for(self, image_name: str) -> Path:
        """Absolute path of the image: under the first folder holding it (else under the first folder).

        With several folders the lookup happens even when ``check=False``, so the path is right.
        """
        found = self._lookup(image_name) if self.check or len(self.image_roots) > 1 else None
        return found if found is not None else self._candidates(image_name)[0]

    def exists(self, image_name: str) -> bool:
        if not self.check:
            return True
        return self._lookup(image_name) is not None

    def missing_error(self, image_name: str, source: Path, where: str) -> MissingFileError:
        looked = " or ".join(str(c) for c in self._candidates(image_name))
        return MissingFileError(
            f"image {image_name!r} referenced by {where} does not exist (looked for {looked})",
            path=source,
        )
