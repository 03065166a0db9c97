"""Backend records and selection shared by every op.

Each op declares an ordered table of backends (``triton`` for CUDA tensors, ``cpp`` for CPU tensors,
``reference`` for any device). Selection order: the explicit ``backend=`` argument, then the
``BAMCO_FAST_BACKEND`` environment variable, then the first backend with no reasons against the inputs.
An explicit choice (argument or environment) never falls back: if it cannot run, a
:class:`BackendUnavailableError` lists every backend's reasons.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

ENV_VAR = "BAMCO_FAST_BACKEND"
BACKEND_NAMES = ("triton", "cpp", "reference")


class BackendUnavailableError(RuntimeError):
    """Raised when a requested backend cannot run the given inputs; the message lists all reasons."""


@dataclass(frozen=True)
class Backend:
    """One implementation of an op.

    Attributes:
        name: ``"triton"``, ``"cpp"`` or ``"reference"``.
        devices: device types it accepts (``"cuda"``, ``"cpu"``).
        dtypes: floating dtypes it accepts.
        availability: returns ``None`` when the backend can be used in this process, else the reason.
        extra_checks: per-op input checks returning reasons (empty when supported).
    """

    name: str
    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    availability: Callable[[], str | None]
    extra_checks: Callable[..., list[str]] = field(default=lambda *a, **k: [])

    def not_supported_reasons(self, device: torch.device, dtype: torch.dtype, *args, **kwargs) -> list[str]:
        """Every reason this backend cannot run inputs on ``device`` with ``dtype`` (empty if it can)."""
        reasons = []
        missing = self.availability()
        if missing:
            reasons.append(missing)
        if device.type not in self.devices:
            reasons.append(f"device {device.type!r} not in {list(self.devices)}")
        if dtype not in self.dtypes:
            names = [str(d).replace("torch.", "") for d in self.dtypes]
            reasons.append(f"dtype {str(dtype).replace('torch.', '')} not in {names}")
        reasons.extend(self.extra_checks(*args, **kwargs))
        return reasons


def triton_interpreted() -> bool:
    """True when ``TRITON_INTERPRET=1`` runs Triton kernels on CPU tensors (tests only)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


_TRITON_IMPORT: list[str | None] = []


def triton_import_error() -> str | None:
    """Why Triton cannot be used at all in this process (``None`` if it imports); probed once."""
    if not _TRITON_IMPORT:
        _TRITON_IMPORT.append(_probe_triton())
    return _TRITON_IMPORT[0]


def _probe_triton() -> str | None:
    try:
        if importlib.util.find_spec("triton") is None:
            return "triton is not installed"
        import triton
        import triton.language  # noqa: F401
    except Exception as exc:
        return f"triton failed to import: {type(exc).__name__}: {exc}"
    return None


def compile_constant(fn: Callable) -> Callable:
    """Mark ``fn`` (no arguments, answer fixed for the life of the process) as a compile-time constant.

    When its first call happens inside ``torch.compile``, Dynamo runs it once, eagerly, and uses the
    result instead of tracing it (tracing an import or an extension load is a graph break). This is
    ``torch.compiler.assume_constant_result``, applied without importing ``torch._dynamo`` (about a second
    of import time) when Dynamo is not loaded yet: the public decorator only sets this marker, which
    ``tests/ops/test_backends.py`` checks.
    """
    if "torch._dynamo" in sys.modules:
        return torch.compiler.assume_constant_result(fn)
    fn._dynamo_marked_constant = True  # type: ignore[attr-defined]
    return fn


# Availability probes import Triton or load the compiled extension on first use; see compile_constant.
@compile_constant
def triton_availability() -> str | None:
    err = triton_import_error()
    if err:
        return err
    if not triton_interpreted() and not torch.cuda.is_available():
        return "no CUDA device (Triton kernels run on CPU tensors only under TRITON_INTERPRET=1)"
    return None


def is_explicit(requested: str | None) -> bool:
    """Whether a backend is named by the argument or the ``BAMCO_FAST_BACKEND`` environment variable."""
    if requested not in (None, "auto"):
        return True
    return os.environ.get(ENV_VAR, "").strip() not in ("", "auto")


@compile_constant
def cpp_availability() -> str | None:
    from .. import _cpp

    if _cpp.available():
        return None
    _cpp.warn_once()
    return f"compiled extension bamco_fast._C not loaded ({_cpp.load_error()})"


def select(
    backends: Sequence[Backend],
    requested: str | None,
    device: torch.device,
    dtype: torch.dtype,
    *args,
    op_name: str,
    **kwargs,
) -> Backend:
    """Pick the backend for these inputs.

    Args:
        backends: the op's table, in priority order.
        requested: ``backend=`` argument (``None`` or ``"auto"`` for automatic).
        device, dtype: of the inputs.
        *args, **kwargs: passed to each backend's ``extra_checks``.
        op_name: used in error messages.

    Raises:
        ValueError: ``requested`` (or the environment variable) names no backend.
        BackendUnavailableError: an explicitly requested backend cannot run, or none can.
    """
    source = "backend argument"
    if requested is None or requested == "auto":
        env = os.environ.get(ENV_VAR, "").strip()
        if env and env != "auto":
            requested, source = env, f"{ENV_VAR} environment variable"
        else:
            requested = None
    names = [b.name for b in backends]
    if requested is not None and requested not in names:
        raise ValueError(f"{op_name}: {source} must be one of {[*names, 'auto']}, got {requested!r}")
    reasons = {b.name: b.not_supported_reasons(device, dtype, *args, **kwargs) for b in backends}
    if requested is not None:
        if not reasons[requested]:
            return next(b for b in backends if b.name == requested)
        raise BackendUnavailableError(
            f"{op_name}: backend {requested!r} was requested by the {source} but cannot run these inputs "
            f"(device={device.type}, dtype={str(dtype).replace('torch.', '')}):\n" + format_reasons(reasons)
        )
    for b in backends:
        if not reasons[b.name]:
            return b
    raise BackendUnavailableError(
        f"{op_name}: no backend can run these inputs (device={device.type}, dtype={dtype}):\n"
        + format_reasons(reasons)
    )


_CHOSEN: dict[tuple, Backend] = {}


def select_for_op(
    op_name: str,
    table: Callable[[bool], Sequence[Backend]],
    requested: str | None,
    device: torch.device,
    dtype: torch.dtype,
) -> Backend:
    """:func:`select` for an op whose table depends only on ``explicit`` and the environment, memoised.

    ``table(explicit)`` returns the op's backend table. The answer is kept per (op, requested backend,
    ``BAMCO_FAST_BACKEND``, ``TRITON_INTERPRET``, device type, dtype): availability is fixed for the life
    of the process, so repeated calls skip rebuilding every backend's reasons. Failures are not kept.
    While ``torch.compile`` traces, the choice is made afresh (once per trace; the memo stays eager).
    """
    if torch.compiler.is_compiling():
        return select(table(is_explicit(requested)), requested, device, dtype, op_name=op_name)
    key = (
        op_name,
        requested,
        os.environ.get(ENV_VAR),
        os.environ.get("TRITON_INTERPRET"),
        device.type,
        dtype,
    )
    chosen = _CHOSEN.get(key)
    if chosen is None:
        chosen = select(table(is_explicit(requested)), requested, device, dtype, op_name=op_name)
        _CHOSEN[key] = chosen
    return chosen


def format_reasons(reasons: dict[str, list[str]]) -> str:
    """One line per backend: ``name: ok`` or ``name: reason; reason``."""
    return "\n".join(f"  {name}: {'; '.join(r) if r else 'ok'}" for name, r in reasons.items())


def check_first_order_backward(op_name: str) -> None:
    """Raise when a fused backward runs under ``create_graph=True``.

    The fused gradients are computed by kernels that are not themselves differentiable; letting autograd
    record them would make higher-order derivatives silently miss the op's curvature.
    """
    if torch.is_grad_enabled() and not torch.compiler.is_compiling():
        raise RuntimeError(
            f"{op_name}: the fused backends give first-order gradients only (backward with "
            "create_graph=True asks for more); use backend='reference' for higher-order derivatives"
        )
