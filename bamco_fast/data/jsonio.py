"""JSON/JSONL reading with precise error messages, and atomic file writing.

* :func:`read_json` parses a whole file; a syntax error names the file, line and column.
* :func:`iter_jsonl` yields ``(line_number, object)`` for each non-blank line of a JSON Lines file.
* :func:`atomic_write_text` / :func:`atomic_write_json` write to a temporary file in the target's
  folder and rename it over the target, so an interrupted or failed run never leaves a partial
  output file.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DataFormatError, MissingFileError

__all__ = [
    "atomic_write_json",
    "atomic_write_text",
    "iter_jsonl",
    "read_json",
    "require_file",
    "require_keys",
]


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is an existing file, else raise :class:`MissingFileError`."""
    if not path.is_file():
        raise MissingFileError(f"{what} not found (expected a file here)", path=path)
    return path


def read_json(path: Path, what: str = "JSON file") -> Any:
    """Parse ``path`` as JSON; errors name the file, line and column."""
    require_file(path, what)
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except json.JSONDecodeError as exc:
        raise DataFormatError(
            f"malformed JSON at column {exc.colno}: {exc.msg}", path=path, line=exc.lineno
        ) from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path=path) from None


def iter_jsonl(path: Path, what: str = "JSONL file") -> Iterator[tuple[int, Any]]:
    """Yield ``(line_number, value)`` for every non-blank line; a bad line raises with its number."""
    require_file(path, what)
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(
                    f"malformed JSON line (column {exc.colno}: {exc.msg})", path=path, line=number
                ) from None


def require_keys(
    item: Any, keys: tuple[str, ...], *, path: Path, line: int | None = None, index: int | None = None
):
    """Check that ``item`` is an object holding ``keys``; return it.

    ``index`` (the position in a JSON list) is reported when there is no line number.
    """
    where = "" if index is None else f"entry {index}: "
    if not isinstance(item, dict):
        raise DataFormatError(
            f"{where}expected a JSON object, got {type(item).__name__}", path=path, line=line
        )
    missing = [k for k in keys if k not in item]
    if missing:
        raise DataFormatError(
            f"{where}missing field(s) {missing}; expected {list(keys)}, got {sorted(item)}",
            path=path,
            line=line,
        )
    return item


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        # Also on KeyboardInterrupt: remove the temporary file, leave any previous output untouched.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise


def atomic_write_json(path: Path, value: Any, *, indent: int | None = 1) -> None:
    """Serialise ``value`` as UTF-8 JSON and write it atomically to ``path``."""
    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=indent) + "\n")
