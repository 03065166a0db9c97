"""What the Triton layer knows about the process before (and without) importing Triton.

The lowest layer of the Triton backends: the kernels and the op front-ends
(:mod:`bamco_fast.ops._backends`) both ask here whether kernels run in the interpreter and whether Triton
imports at all. It imports neither Triton nor anything of ``bamco_fast``.
"""

from __future__ import annotations

import importlib.util
import os

_IMPORT_ERROR: list[str | None] = []


def triton_interpreted() -> bool:
    """True when ``TRITON_INTERPRET=1`` runs Triton kernels on CPU tensors (tests only)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_import_error() -> str | None:
    """Why Triton cannot be used at all in this process (``None`` if it imports); probed once."""
    if not _IMPORT_ERROR:
        _IMPORT_ERROR.append(_probe_import())
    return _IMPORT_ERROR[0]


def _probe_import() -> str | None:
    try:
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed"
        import triton
        import triton.language  # noqa: F401
    except Exception as exc:
        return f"triton failed to import: {type(exc).__name__}: {exc}"
    return None
