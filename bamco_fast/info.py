"""``python -m bamco_fast.info``: versions, the compiled extension, CUDA, and every op's backends."""

from __future__ import annotations

import importlib
import platform
import sys

import torch

from . import _cpp, ops
from .ops import _backends


def _version(module: str) -> str:
    try:
        return getattr(importlib.import_module(module), "__version__", "unknown")
    except Exception as exc:
        return f"not available ({type(exc).__name__}: {exc})"


def report() -> str:
    """The whole report as text."""
    from . import __version__

    lines = [f"bamco_fast {__version__}", f"python {platform.python_version()} ({sys.executable})"]
    for mod in ("torch", "triton", "transformers", "open_clip", "peft", "timm", "monai"):
        lines.append(f"{mod:>13}: {_version(mod)}")
    if _cpp.available():
        info = _cpp.build_info()
        lines.append(
            f"bamco_fast._C: loaded (built for torch {info.get('torch_version')}, {info.get('compiler')}, "
            f"OpenMP {info.get('openmp')}, {torch.get_num_threads()} threads)"
        )
        lines.append(
            f"  CPU kernels: {_cpp.cpu_isa()} (this CPU runs {', '.join(_cpp.cpu_isa_levels())}; "
            "BAMCO_FAST_CPU_ISA to force)"
        )
    else:
        lines.append(f"bamco_fast._C: NOT loaded: {_cpp.load_error()}")
    if torch.cuda.is_available():
        lines.append(
            f"         CUDA: available, {torch.cuda.device_count()} device(s): {torch.cuda.get_device_name(0)}"
        )
    else:
        lines.append("         CUDA: not available")
    lines.append(f"TRITON_INTERPRET: {'on' if _backends.triton_interpreted() else 'off'}")
    lines.append("ops (backends in priority order; 'ok' = available in this process):")
    for name, table in ops.OPS.items():
        lines.append(f"  {name}")
        for backend in table():
            why = backend.availability()
            devices = ",".join(backend.devices)
            dtypes = ",".join(str(d).replace("torch.", "") for d in backend.dtypes)
            lines.append(f"    {backend.name:<9} [{devices}; {dtypes}]: {'ok' if why is None else why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    print(report())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
