"""Backend records, tables and selection shared by every op.

Each op declares one :class:`BackendTable`: its backends in priority order (``triton`` for CUDA tensors,
``cpp`` for CPU tensors, ``reference`` for any device), each carrying the callable that runs the op, so
adding a backend is one more entry in that table (:func:`triton_backend`, :func:`cpp_backend` and
:func:`reference_backend` build the usual entries). Selection order: the explicit ``backend=`` argument,
then the ``BAMCO_FAST_BACKEND`` environment variable, then the first backend with no reasons against the
inputs.
An explicit choice (argument or environment) never falls back: if it cannot run, a
:class:`BackendUnavailableError` lists every backend's reasons.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..kernels._probe import triton_import_error, triton_interpreted

ENV_VAR = "BAMCO_FAST_BACKEND"
BACKEND_NAMES = ("triton", "cpp", "reference")
__all__ = [
    "BACKEND_NAMES",
    "ENV_VAR",
    "Backend",
    "BackendTable",
    "BackendUnavailableError",
    "check_first_order_backward",
    "compile_constant",
    "cpp_availability",
    "cpp_backend",
    "reference_backend",
    "register_once",
    "require_cpp",
    "select",
    "triton_availability",
    "triton_backend",
    "triton_import_error",
    "triton_interpreted",
]


class BackendUnavailableError(RuntimeError):
    """Raised when a requested backend cannot run the given inputs; the message lists all reasons."""

    user_error = True  # a forced backend that cannot run: reported in one line by the CLIs


@dataclass(frozen=True)
class Backend:
    """One implementation of an op.

    Attributes:
        name: ``"triton"``, ``"cpp"`` or ``"reference"``.
        devices: device types it accepts (``"cuda"``, ``"cpu"``).
        dtypes: floating dtypes it accepts.
        availability: returns ``None`` when the backend can be used in this process, else the reason.
        run: runs the op; takes the op's validated arguments (see the op's table).
        cpu_when_interpreted: a Triton backend: when named explicitly under ``TRITON_INTERPRET=1`` it also
            takes CPU tensors (automatic choice never sends CPU tensors to it).
    """

    name: str
    devices: tuple[str, ...]
    dtypes: tuple[torch.dtype, ...]
    availability: Callable[[], str | None]
    run: Callable[..., Any]
    cpu_when_interpreted: bool = False

    def not_supported_reasons(self, device: torch.device, dtype: torch.dtype) -> list[str]:
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
        return reasons


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


def register_once(register: Callable[[], None]) -> Callable[[], None]:
    """Wrap ``register`` (it attaches fake implementations or an autograd formula to an op) to run once.

    The wrapper runs ``register`` on its first successful call and does nothing afterwards; a call that
    raises is tried again next time. It is a :func:`compile_constant`, so the first call may happen inside
    ``torch.compile`` (the registration then runs eagerly, outside the traced graph).
    """
    done = False

    def once() -> None:
        nonlocal done
        if not done:
            register()
            done = True

    once.__name__, once.__qualname__, once.__doc__ = (
        register.__name__,
        register.__qualname__,
        register.__doc__,
    )
    return compile_constant(once)


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


def require_cpp(op_name: str) -> None:
    """Raise :class:`BackendUnavailableError` naming ``op_name`` when ``bamco_fast._C`` is not loaded."""
    reason = cpp_availability()
    if reason:
        raise BackendUnavailableError(f"{op_name}: {reason}")


def select(
    backends: Sequence[Backend],
    requested: str | None,
    device: torch.device,
    dtype: torch.dtype,
    *,
    op_name: str,
) -> Backend:
    """Pick the backend for these inputs.

    Args:
        backends: the op's table, in priority order.
        requested: ``backend=`` argument (``None`` or ``"auto"`` for automatic).
        device, dtype: of the inputs.
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
    reasons = {b.name: b.not_supported_reasons(device, dtype) for b in backends}
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


@dataclass(frozen=True)
class BackendTable:
    """An op's backends in priority order, and the choice among them for given inputs.

    Attributes:
        op_name: the op, for error messages and the memo of choices.
        entries: the backends, highest priority first.
    """

    op_name: str
    entries: tuple[Backend, ...]

    def backends(self, explicit: bool = False) -> tuple[Backend, ...]:
        """The table in priority order.

        Args:
            explicit: the backend was named by the caller; only then may a Triton entry take CPU tensors,
                and only under ``TRITON_INTERPRET=1`` (automatic choice never sends CPU tensors to Triton).
        """
        if not (explicit and triton_interpreted()):
            return self.entries
        return tuple(
            replace(b, devices=(*b.devices, "cpu"))
            if b.cpu_when_interpreted and "cpu" not in b.devices
            else b
            for b in self.entries
        )

    def select(self, requested: str | None, device: torch.device, dtype: torch.dtype) -> Backend:
        """:func:`select` over this table, memoised.

        The answer is kept per (op, requested backend, ``BAMCO_FAST_BACKEND``, ``TRITON_INTERPRET``,
        device type, dtype): availability is fixed for the life of the process, so repeated calls skip
        rebuilding every backend's reasons. Failures are not kept. While ``torch.compile`` traces, the
        choice is made afresh (once per trace; the memo stays eager).
        """
        if torch.compiler.is_compiling():
            return select(
                self.backends(is_explicit(requested)), requested, device, dtype, op_name=self.op_name
            )
        key = (
            self.op_name,
            requested,
            os.environ.get(ENV_VAR),
            os.environ.get("TRITON_INTERPRET"),
            device.type,
            dtype,
        )
        chosen = _CHOSEN.get(key)
        if chosen is None:
            chosen = select(
                self.backends(is_explicit(requested)), requested, device, dtype, op_name=self.op_name
            )
            _CHOSEN[key] = chosen
        return chosen


def triton_backend(run: Callable[..., Any], dtypes: tuple[torch.dtype, ...]) -> Backend:
    """A Triton entry: CUDA tensors (CPU ones too when named under ``TRITON_INTERPRET=1``)."""
    return Backend("triton", ("cuda",), dtypes, triton_availability, run, cpu_when_interpreted=True)


def cpp_backend(run: Callable[..., Any]) -> Backend:
    """A C++ entry (``bamco_fast._C``): CPU tensors in float32 or float64."""
    return Backend("cpp", ("cpu",), (torch.float32, torch.float64), cpp_availability, run)


def reference_backend(run: Callable[..., Any]) -> Backend:
    """A pure-torch entry: any device, any floating dtype, always available."""
    dtypes = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
    return Backend("reference", ("cpu", "cuda"), dtypes, lambda: None, run)


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
