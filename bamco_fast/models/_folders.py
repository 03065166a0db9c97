"""Publishing a fully written folder in one step (models and knowledge spaces are saved as folders).

A folder is filled under a staging name next to its target (:func:`bamco_fast.data.jsonio.make_staging_dir`,
normal ``mkdir`` mode) and renamed into place, so a reader never sees a half-written folder: either the
previous one or the complete new one. Every file in it gets the mode a plain ``open(path, "w")`` gives
(``0o666`` minus the umask) before it is published, whatever library wrote it (safetensors writes 0600).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from ..data.jsonio import make_staging_dir


def _check_target(folder: Path, overwrite: bool, what: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{what}: {str(folder)!r} exists and is not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{what}: folder {str(folder)!r} exists and is not empty (pass overwrite=True)")


@contextlib.contextmanager
def staged_folder(folder: Path, *, overwrite: bool, what: str) -> Iterator[Path]:
    """Yield an empty staging folder; on normal exit it replaces ``folder``, on error it is removed.

    Args:
        folder: the final folder. An existing non-empty one is replaced only when ``overwrite``.
        overwrite: allow replacing an existing non-empty folder.
        what: how messages name the folder (e.g. ``"KnowledgeSpace.save"``).
    """
    folder = Path(folder).absolute()
    _check_target(folder, overwrite, what)
    staging = make_staging_dir(folder.parent, folder.name)
    try:
        yield staging
        normal_file_modes(staging)
        _check_target(folder, overwrite, what)
        if folder.exists():
            trash = folder.parent / f".{folder.name}.{secrets.token_hex(4)}.old"
            os.replace(folder, trash)
            try:
                os.replace(staging, folder)
            except BaseException:
                os.replace(trash, folder)
                raise
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def normal_file_modes(folder: Path) -> None:
    """Give every file under ``folder`` the mode a plain ``open(path, "w")`` gives (0o666 minus the umask);
    some writers (safetensors) create 0o600 files."""
    umask = os.umask(0)
    os.umask(umask)
    for path in Path(folder).rglob("*"):
        if path.is_file() and not path.is_symlink():
            path.chmod(0o666 & ~umask)


def read_safetensors(path: Path | str, what: str) -> dict:
    """``safetensors.torch.load_file(path)``; a missing, truncated or corrupt file is a ``ValueError`` naming
    it and ``what`` it holds (the library raises its own error type)."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors' error type is not an OSError or ValueError
        message = " ".join(str(exc).split())[:300]
        raise ValueError(f"{path}: cannot read the {what} ({type(exc).__name__}: {message})") from None
