"""Loads the compiled extension ``bamco_fast._C`` once, recording (not raising) a failure.

It also chooses the SIMD level the CPU row kernels run at (:func:`cpu_isa`, :func:`set_cpu_isa`).

``import bamco_fast`` must work without the extension (a source checkout that was never built, a wheel
built against another torch). The load error is kept, warned about once when a ``cpp`` backend is
first considered, and shown by ``python -m bamco_fast.info``.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

import torch

_DISABLE_ENV = "BAMCO_FAST_DISABLE_CPP"
_module: Any = None
_error: str | None = None
_loaded = False
_warned = False


def _load() -> None:
    global _module, _error, _loaded
    if _loaded:
        return
    _loaded = True
    if os.environ.get(_DISABLE_ENV, "") not in ("", "0"):
        _error = f"disabled by {_DISABLE_ENV}={os.environ[_DISABLE_ENV]}"
        return
    try:
        _module = importlib.import_module("bamco_fast._C")
    except Exception as exc:  # ImportError, OSError (undefined symbol), RuntimeError from registration
        _error = f"{type(exc).__name__}: {exc}"
        return
    built = _module.build_info().get("torch_version", "?")
    if built.split("+")[0] != torch.__version__.split("+")[0]:
        _error = (
            f"bamco_fast._C was built for torch {built} but torch {torch.__version__} is running; "
            "rebuild with `pip install --no-build-isolation -e .`"
        )
        _module = None


def available() -> bool:
    """Whether the compiled CPU ops are registered under ``torch.ops.bamco_fast``."""
    _load()
    return _module is not None


def load_error() -> str | None:
    """Why the extension is unavailable (``None`` when it loaded)."""
    _load()
    return _error


def warn_once() -> None:
    """Warn (once per process) that the compiled ops are missing, with the reason."""
    global _warned
    if not available() and not _warned:
        _warned = True
        warnings.warn(f"bamco_fast: compiled CPU ops unavailable ({_error}); using fallbacks", stacklevel=3)


def module():
    """The loaded ``bamco_fast._C`` module; raises ``RuntimeError`` with the reason when it is missing."""
    if not available():
        raise RuntimeError(f"bamco_fast._C is not loaded ({_error})")
    return _module


def build_info() -> dict:
    """Build facts of the extension (torch version, compiler, OpenMP), or ``{}`` when not loaded."""
    return dict(_module.build_info()) if available() else {}


# SIMD levels of the CPU row kernels, lowest first: baseline x86-64 (SSE2), x86-64-v3 (AVX2, FMA) and
# x86-64-v4 (AVX-512 F/BW/CD/DQ/VL). Non-x86 builds have "default" only.
CPU_ISA_LEVELS = ("default", "avx2", "avx512")
CPU_ISA_ENV = "BAMCO_FAST_CPU_ISA"


def cpu_isa_levels() -> tuple[str, ...]:
    """The SIMD levels this CPU can run the row kernels at, lowest first (``()`` without the extension)."""
    return tuple(build_info().get("cpu_isa_levels", ()))


def cpu_isa() -> str:
    """The SIMD level the CPU row kernels run at now.

    The best level of this CPU, unless ``BAMCO_FAST_CPU_ISA`` (read at the first call; ``auto``,
    ``default``, ``avx2`` or ``avx512``) or :func:`set_cpu_isa` chose a lower one. Raises ``RuntimeError``
    when the environment variable names a level this CPU cannot run, or the extension is missing.
    """
    return str(module().cpu_isa())


def set_cpu_isa(level: str) -> None:
    """Run the CPU row kernels at ``level`` (``"auto"`` for the best this CPU runs) from now on.

    Raises:
        RuntimeError: this CPU cannot run ``level`` (the message lists the levels it can run), ``level``
            is not a level name, or the extension is missing. Nothing falls back silently.
    """
    module().set_cpu_isa(level)


@contextlib.contextmanager
def forced_cpu_isa(level: str) -> Iterator[None]:
    """Run the CPU row kernels at ``level`` inside the block, restoring the previous level afterwards."""
    before = cpu_isa()
    set_cpu_isa(level)
    try:
        yield
    finally:
        set_cpu_isa(before)
