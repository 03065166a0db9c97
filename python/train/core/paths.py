"""Paths in a run's saved configuration: relative to the run folder inside it, absolute outside it.

A config field that names a file or folder carries ``metadata={"path": True}`` (or ``"local-dir"`` for an
open_clip name whose ``local-dir:`` part is a folder). When a run saves its configuration
(:func:`portable`), a path inside the run folder is written relative to it (``towers``, ``tiny_llm``) and
any other local path absolute; names that are not local paths (hub names) are kept as they are. When a
run is read back (:func:`resolved`), a relative path that exists under the run folder is taken from
there. So a run folder can be moved or copied and resumed, and a run started from another working
directory still finds its data; the fingerprint that guards resumes is computed on the portable form.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path
from typing import Any

__all__ = ["path_keys", "portable", "resolved"]

_LOCAL_DIR = "local-dir:"


def path_keys(cls: type, prefix: str = "") -> dict[str, str]:
    """Dotted key -> path kind (``"path"`` or ``"local-dir"``) of every path field of a config class."""
    out: dict[str, str] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            out.update(path_keys(tp, f"{prefix}{f.name}."))
        elif f.metadata.get("path"):
            out[prefix + f.name] = "local-dir" if f.metadata["path"] == "local-dir" else "path"
    return out


def _split(value: str, kind: str) -> tuple[str, str]:
    if kind == "local-dir" and value.startswith(_LOCAL_DIR):
        return _LOCAL_DIR, value[len(_LOCAL_DIR) :]
    if kind == "local-dir":
        return "", ""  # hf-hub:... and other names are not paths
    return "", value


def _portable_one(value: str, kind: str, run_dir: Path) -> str:
    prefix, path = _split(value, kind)
    if not path or not Path(path).expanduser().exists():
        return value
    absolute = Path(os.path.abspath(Path(path).expanduser()))
    run = Path(os.path.abspath(run_dir))
    if absolute == run or run in absolute.parents:
        return prefix + absolute.relative_to(run).as_posix()
    return prefix + str(absolute)


def _resolved_one(value: str, kind: str, run_dir: Path) -> str:
    prefix, path = _split(value, kind)
    if not path or Path(path).is_absolute():
        return value
    candidate = Path(run_dir) / path
    return prefix + str(Path(os.path.abspath(candidate))) if candidate.exists() else value


def _walk(data: dict[str, Any], keys: dict[str, str], fn, run_dir: Path, prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        dotted = prefix + key
        if isinstance(value, dict):
            out[key] = _walk(value, keys, fn, run_dir, dotted + ".")
        elif dotted in keys and isinstance(value, str) and value:
            out[key] = fn(value, keys[dotted], run_dir)
        else:
            out[key] = value
    return out


def portable(data: dict[str, Any], cls: type, run_dir: Path) -> dict[str, Any]:
    """``data`` (a config as a nested dict) with its paths made portable for ``run_dir``."""
    return _walk(data, path_keys(cls), _portable_one, run_dir)


def resolved(data: dict[str, Any], cls: type, run_dir: Path) -> dict[str, Any]:
    """Inverse of :func:`portable`: run-relative paths that exist under ``run_dir`` made absolute."""
    return _walk(data, path_keys(cls), _resolved_one, run_dir)
