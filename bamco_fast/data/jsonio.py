"""JSON/JSONL reading with precise error messages, and atomic file writing.

* :func:`read_json` parses a whole file; a syntax error names the file, line and column.
* :func:`iter_jsonl` yields ``(line_number, object)`` for each non-blank line of a JSON Lines file.
* :func:`atomic_write_text` / :func:`atomic_write_json` write to a temporary file in the target's
  folder and rename it over the target, so an interrupted or failed run never leaves a partial
  output file. The file gets the mode a plain ``open(path, "w")`` would give it: the target's current
  mode when it exists, else ``0o666`` minus the umask (never the ``0o600`` of :func:`tempfile.mkstemp`).
* :func:`atomic_link` gives a file a second name (a hard link, renamed into place), so two names share
  one copy of the data; it falls back to an atomic copy where the file system has no hard links.
* :func:`make_staging_dir` makes a fresh folder (``0o777`` minus the umask) to fill and rename into
  place.
* :func:`check_output_path` checks, before any long work, that an output file can be written.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import DataFormatError, MissingFileError

__all__ = [
    "atomic_link",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_output_path",
    "is_read_only",
    "iter_jsonl",
    "make_staging_dir",
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


def _temp_name(folder: Path, name: str) -> Path:
    return folder / f".{name}.{secrets.token_hex(6)}.tmp"


def _create_temp_file(folder: Path, name: str) -> tuple[int, Path]:
    """Open a new, unique temporary file in ``folder`` with mode ``0o666`` minus the umask."""
    for _ in range(100):
        candidate = _temp_name(folder, name)
        try:
            return os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique temporary file for {name!r} in {folder}")


def make_staging_dir(parent: Path, name: str) -> Path:
    """Create an empty folder ``parent/.name.<random>.tmp`` (mode ``0o777`` minus the umask).

    Fill it, then ``os.replace`` it onto ``parent/name``: unlike :func:`tempfile.mkdtemp` (mode
    ``0o700``) the renamed folder has the mode a plain ``mkdir`` gives.
    """
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(100):
        candidate = _temp_name(parent, name)
        try:
            candidate.mkdir(mode=0o777)
            return candidate
        except FileExistsError:
            continue
    raise FileExistsError(f"could not create a unique staging folder for {name!r} in {parent}")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync, an atomic rename and a folder fsync.

    The result keeps the mode of an existing ``path``; a new file gets ``0o666`` minus the umask.
    An interrupted or failed write (also ``KeyboardInterrupt``) removes the temporary file and
    leaves any previous ``path`` untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        keep_mode: int | None = stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        keep_mode = None
    fd, tmp = _create_temp_file(path.parent, path.name)
    with _removed_on_failure(tmp), os.fdopen(fd, "wb") as handle:
        if keep_mode is not None:
            os.fchmod(handle.fileno(), keep_mode)
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    _move_into_place(tmp, path)


def atomic_link(source: Path, path: Path) -> None:
    """Make ``path`` name the same file as ``source`` (a hard link), replacing ``path`` atomically.

    Both names then share one copy of the data, and removing either name leaves the other intact. On a
    file system without hard links (or across file systems) ``source`` is copied with
    :func:`atomic_write_bytes` instead.
    """
    source, path = Path(source), Path(path)
    tmp = _temp_name(path.parent, path.name)
    try:
        os.link(source, tmp)
    except OSError:
        atomic_write_bytes(path, source.read_bytes())
        return
    _move_into_place(tmp, path)


@contextlib.contextmanager
def _removed_on_failure(tmp: Path) -> Iterator[None]:
    """Remove the temporary file ``tmp`` (if it exists) when the body fails, also on ``KeyboardInterrupt``."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _move_into_place(tmp: Path, path: Path) -> None:
    """Rename the complete temporary file ``tmp`` onto ``path`` (atomic) and flush the folder entry; a
    failed rename removes ``tmp`` and leaves any previous ``path`` untouched."""
    with _removed_on_failure(tmp):
        os.replace(tmp, path)
    _fsync_dir(path.parent)


def _fsync_dir(folder: Path) -> None:
    """Flush the folder entry of a rename to disk (best effort: not every file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically; file modes as :func:`atomic_write_bytes`."""
    atomic_write_bytes(path, text.encode("utf-8"))


def is_read_only(path: Path) -> bool:
    """Whether the file ``path`` is read-only: no write permission bit, or not writable by this process
    (the atomic writers replace files by renaming, which permissions alone would not stop)."""
    return not (os.stat(path).st_mode & 0o222) or not os.access(path, os.W_OK)


def check_output_path(path: Path, what: str) -> Path:
    """Check that the file ``path`` can be written (by the atomic writers), before the work that makes it.

    Fails when ``path`` is a folder or an existing read-only file, when a component of its parent is a
    regular file, or when the folder it would go into (or its nearest existing ancestor, folders being created on write) does
    not accept a new file; a probe file is created and removed to find out. Missing parent folders
    are not created here.

    Args:
        path: the output file.
        what: how the user names it in messages, e.g. ``"--out"``.

    Raises:
        ValueError: with ``what``, what was expected and what was found.
    """
    path = Path(path)
    try:
        return _check_output_path(path, what)
    except OSError as exc:  # e.g. a folder on the way that may not be listed
        raise ValueError(f"{what}: cannot use {str(path)!r} as an output file: {exc}") from None


def _check_output_path(path: Path, what: str) -> Path:
    if path.is_dir():
        raise ValueError(f"{what} must be a file path, got {str(path)!r}, which is a folder")
    if path.is_file() and is_read_only(path):
        raise ValueError(
            f"{what}: {str(path)!r} exists and is read-only; it would be replaced (make it writable or choose another path)"
        )
    folder = path.parent
    while not folder.exists():
        if folder.is_symlink():
            raise ValueError(f"{what}: {str(folder)!r} is a broken symbolic link (output {str(path)!r})")
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(
            f"{what} must be a file in a folder, got {str(path)!r}: {str(folder)!r} is not a folder"
        )
    try:
        fd, probe = _create_temp_file(folder, path.name)
    except OSError as exc:
        raise ValueError(
            f"{what}: cannot create files in {str(folder)!r} (output {str(path)!r}): {exc.strerror or exc}"
        ) from None
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(probe)
    return path


def atomic_write_json(path: Path, value: Any, *, indent: int | None = 1) -> None:
    """Serialise ``value`` as UTF-8 JSON and write it atomically to ``path``."""
    atomic_write_text(path, json.dumps(value, ensure_ascii=False, indent=indent) + "\n")
