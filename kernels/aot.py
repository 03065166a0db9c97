"""Compile the Triton kernels for a CUDA architecture on a machine without a GPU, and report their resources.

Triton compiles a kernel to PTX and a cubin without touching a GPU; only loading and launching needs one.
This module records the launches the host code of each op would make for given shapes (the tensors are
CPU tensors, nothing runs), binds each launch's arguments with Triton's own specialisation rules for the
named target (integer arguments equal to 1 or divisible by 16, pointer alignment), compiles every distinct
specialisation and reads what the compiler produced:

* ``shared``: bytes of shared memory per program (must fit the target's per-block limit),
* ``registers`` and ``spill_stores`` / ``spill_loads`` (bytes per thread) from ``ptxas -v`` on the PTX,
* ``mma``: the matrix instruction ``tl.dot`` became (``wgmma`` on sm_90, ``mma`` on sm_80, ``fma`` for
  full-precision fp32 dots, ``-`` without a dot).

It proves the kernels compile for the card with these launch parameters, through the real compiler and
its tensor-core lowering (which the interpreter never exercises), and shows their register and
shared-memory budget; it measures no time.

Run it in a process without ``TRITON_INTERPRET`` (the interpreter replaces the jitted functions):

    python -m bamco_fast.kernels.aot [--target sm_90] [--case loss-b48 ...] [--dtype bfloat16 ...] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass

import torch

from bamco_fast.kernels._probe import triton_interpreted

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


@dataclass(frozen=True)
class Target:
    """A CUDA architecture to compile for.

    Attributes:
        name: ``"sm_90"`` style name.
        capability: compute capability as Triton takes it (90 for 9.0).
        sms: streaming multiprocessors of the reference card (sets the key splits of the loss).
        max_shared: bytes of shared memory one program may use (opt-in maximum per block).
        card: the reference card the numbers above come from.
    """

    name: str
    capability: int
    sms: int
    max_shared: int
    card: str


TARGETS = {
    "sm_90": Target("sm_90", 90, 132, 232_448, "H100 SXM"),
    "sm_80": Target("sm_80", 80, 108, 166_912, "A100 SXM"),
}


@dataclass
class Launch:
    """One recorded launch: the jitted kernel, its grid and its arguments."""

    kernel: object
    grid: tuple[int, ...]
    args: tuple
    kwargs: dict


@dataclass
class KernelReport:
    """What one compiled specialisation needs (see the module docstring for the fields)."""

    case: str
    dtype: str
    kernel: str
    shape: tuple[int, ...]
    grid: tuple[int, ...]
    num_warps: int
    num_stages: int
    shared: int
    registers: int
    spill_stores: int
    spill_loads: int
    mma: str
    compile_s: float


@contextlib.contextmanager
def record_launches(target: Target) -> Iterator[list[Launch]]:
    """Record (instead of running) every jitted-kernel launch made inside the block.

    The loss host code plans its launches for ``target`` (GPU tiles, key splits for ``target.sms``) even
    though the tensors are on the CPU. Launch results are undefined: outputs are left unwritten.
    """
    import triton.runtime.jit as jit

    from . import bamco_loss

    launches: list[Launch] = []

    def run(self, *args, grid, warmup, **kwargs):
        launches.append(Launch(self, tuple(grid), args, dict(kwargs)))

    original_run = jit.JITFunction.run
    jit.JITFunction.run = run
    try:
        with bamco_loss.launch_settings(plan_for_sms=target.sms):
            yield launches
    finally:
        jit.JITFunction.run = original_run


def _specialise(launch: Launch, backend) -> tuple[str, dict, dict, dict, dict]:
    """Triton's own binding of a launch for ``backend``: (key, signature, constexprs, attrs, options)."""
    from triton.runtime.jit import create_function_from_signature

    fn = launch.kernel
    kwargs = dict(launch.kwargs)
    kwargs.setdefault("debug", False)
    try:
        binder = create_function_from_signature(fn.signature, fn.params, backend)
        bound, specialization, options = binder(*launch.args, **kwargs)
        options, signature, constexprs, attrs = fn._pack_args(backend, kwargs, bound, specialization, options)
    except (AttributeError, TypeError, ValueError) as exc:
        import triton

        raise RuntimeError(
            f"kernels.aot: cannot bind {fn.fn.__name__} with this Triton's launch binder (written against "
            f"Triton 3.8's JITFunction internals; installed {triton.__version__}): {exc}"
        ) from exc
    key = repr((fn.fn.__qualname__, specialization, sorted(options.__dict__.items())))
    return key, signature, constexprs, attrs, options.__dict__


_SPILL = re.compile(r"(\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def ptxas_usage(ptx: str, capability: int) -> tuple[int, int, int]:
    """(registers, spill store bytes, spill load bytes) per thread, from Triton's bundled ``ptxas -v``."""
    from triton.backends.nvidia.compiler import get_ptxas, sm_arch_from_capability

    ptxas = get_ptxas(capability).path
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as fh:
            fh.write(ptx)
        arch = sm_arch_from_capability(capability)
        cmd = [ptxas, "-v", "-lineinfo", "--regAllocOptLevel=2", f"--gpu-name={arch}", src, "-o", src + ".o"]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    log = out.stdout + out.stderr
    regs = _REGS.search(log)
    spill = _SPILL.search(log)
    if regs is None:
        raise RuntimeError(f"no register count in the ptxas log:\n{log}")
    stores, loads = (int(spill.group(1)), int(spill.group(2))) if spill else (0, 0)
    return int(regs.group(1)), stores, loads


def mma_kind(ttir: str, ptx: str) -> str:
    """What the kernel's ``tl.dot`` became: ``wgmma``, ``mma`` (tensor cores), ``fma`` (CUDA cores), ``-`` (no dot)."""
    if "tt.dot" not in ttir:
        return "-"
    if "wgmma.mma_async" in ptx:
        return "wgmma"
    if re.search(r"\bmma\.sync\.aligned", ptx):
        return "mma"
    return "fma"


def _first_tensor_shape(args: Sequence[object]) -> tuple[int, ...]:
    return next((tuple(a.shape) for a in args if isinstance(a, torch.Tensor)), ())


def compile_launches(
    launches: Sequence[Launch], target: Target, case: str, dtype: str, seen: set[str] | None = None
) -> list[KernelReport]:
    """Compile each distinct specialisation among ``launches`` for ``target``; one report each."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource, make_backend

    gpu = GPUTarget("cuda", target.capability, 32)
    backend = make_backend(gpu)
    seen = set() if seen is None else seen
    reports = []
    for launch in launches:
        key, signature, constexprs, attrs, options = _specialise(launch, backend)
        if key in seen:
            continue
        seen.add(key)
        start = time.perf_counter()
        compiled = triton.compile(
            ASTSource(launch.kernel, signature, constexprs, attrs), target=gpu, options=options
        )
        seconds = time.perf_counter() - start
        ptx = compiled.asm["ptx"]
        regs, stores, loads = ptxas_usage(ptx, target.capability)
        reports.append(
            KernelReport(
                case=case,
                dtype=dtype,
                kernel=launch.kernel.fn.__name__,
                shape=_first_tensor_shape(launch.args),
                grid=launch.grid,
                num_warps=compiled.metadata.num_warps,
                num_stages=compiled.metadata.num_stages,
                shared=compiled.metadata.shared,
                registers=regs,
                spill_stores=stores,
                spill_loads=loads,
                mma=mma_kind(compiled.asm["ttir"], ptx),
                compile_s=round(seconds, 2),
            )
        )
    return reports


# --------------------------------------------------------------------------------------------------
# Cases: the host calls whose launches are compiled
# --------------------------------------------------------------------------------------------------
def _loss_case(batch: int, views: int, mode: int, classes: int = 1450, dim: int = 512):
    def call(dtype: torch.dtype) -> None:
        from .bamco_loss import _bamco_loss_triton

        features = torch.empty(batch, views, dim, dtype=dtype)
        prototypes = torch.empty(classes, dim, dtype=dtype)
        labels = torch.zeros(batch, dtype=torch.int64)
        _bamco_loss_triton(features, labels, prototypes, 0.07, mode, True)

    return call


def encoder_block_shapes(batch: int) -> list[tuple[int, ...]]:
    """Input shapes of every dilated depthwise block of the default intra-class encoder at ``batch``."""
    from bamco_fast.encoders import DilatedDepthwiseBlock, IntraClassEncoder

    encoder = IntraClassEncoder()
    shapes: list[tuple[int, ...]] = []
    hooks = [
        m.register_forward_pre_hook(lambda _m, inputs: shapes.append((batch, *inputs[0].shape[1:])))
        for m in encoder.modules()
        if isinstance(m, DilatedDepthwiseBlock)
    ]
    try:
        with torch.no_grad():
            # Shapes only: one stack goes through the reference and the batch size is substituted.
            encoder.set_backend("reference")(torch.zeros(1, 36, 3, 84, 84))
    finally:
        for h in hooks:
            h.remove()
    return list(dict.fromkeys(shapes))


def encoder_block_call(shape: Sequence[int], dtype: torch.dtype) -> None:
    """Forward and backward host calls of one dilated depthwise block on input ``shape`` (B, c, D, H, W)."""
    from .dilated_depthwise_block import dilated_depthwise_block_bwd, dilated_depthwise_block_fwd

    c = shape[1]
    x = torch.zeros(tuple(shape), dtype=dtype)
    params = [
        torch.zeros(3, c, 3, 3, 3, dtype=dtype),
        torch.ones(3, c, dtype=dtype),
        torch.zeros(3, c, dtype=dtype),
        torch.zeros(2 * c, 3 * c, dtype=dtype),
        torch.zeros(c, 2 * c, dtype=dtype),
        torch.full((6,), 0.25, dtype=dtype),
    ]
    dilated_depthwise_block_fwd(x, *params, 1e-5)
    dilated_depthwise_block_bwd(torch.zeros_like(x), x, *params, 1e-5)


def _encoder_case(batch: int):
    def call(dtype: torch.dtype) -> None:
        for shape in encoder_block_shapes(batch):
            encoder_block_call(shape, dtype)

    return call


# name -> (host call taking the dtype, dtypes the op supports)
CASES: dict[str, tuple[Callable[[torch.dtype], None], tuple[str, ...]]] = {
    "loss-b48": (_loss_case(48, 3, 1), ("float32", "float16", "bfloat16")),
    "loss-b32768": (_loss_case(32768, 2, 0), ("float32", "float16", "bfloat16")),
    "encoder-b1": (_encoder_case(1), ("float32", "bfloat16")),
}
CASE_NOTES = {
    "loss-b48": "bamco_multimodal_loss, 3 modalities (view pairs), B=48, C=1450, D=512, with gradient",
    "loss-b32768": "bamco_loss, V=2, B=32768, C=1450, D=512, with gradient",
    "encoder-b1": "every dilated depthwise block shape of the default encoder at B=1, forward and backward",
}


def compile_case(name: str, dtype: str, target: Target, seen: set[str] | None = None) -> list[KernelReport]:
    """Record the launches of case ``name`` in ``dtype`` and compile them for ``target``."""
    call, dtypes = CASES[name]
    if dtype not in dtypes:
        raise ValueError(
            f"compile_case: dtype must be one of {list(dtypes)} for case {name!r}, got {dtype!r}"
        )
    with record_launches(target) as launches:
        call(DTYPES[dtype])
    return compile_launches(launches, target, name, dtype, seen)


def format_table(reports: Sequence[KernelReport], target: Target) -> str:
    head = (
        f"Triton kernels compiled for {target.name} ({target.card}: {target.sms} SMs, "
        f"{target.max_shared // 1024} KiB shared per block); no GPU used, nothing timed"
    )
    cols = "| case | dtype | kernel | first input | warps | stages | registers | spill st/ld B | shared KiB | mma |"
    rule = "|---|---|---|---|---:|---:|---:|---:|---:|---|"
    lines = [head, ""]
    lines += [
        f"{case}: {CASE_NOTES[case]}" for case in dict.fromkeys(r.case for r in reports) if case in CASE_NOTES
    ]
    lines += ["", cols, rule]
    for r in reports:
        lines.append(
            f"| {r.case} | {r.dtype} | {r.kernel} | {'x'.join(map(str, r.shape))} | {r.num_warps} | "
            f"{r.num_stages} | {r.registers} | {r.spill_stores}/{r.spill_loads} | {r.shared / 1024:.1f} | {r.mma} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.kernels.aot", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--target", choices=sorted(TARGETS), default="sm_90")
    parser.add_argument("--case", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--dtype", nargs="+", choices=sorted(DTYPES), default=sorted(DTYPES))
    parser.add_argument("--json", metavar="FILE", help="also write the reports as JSON")
    args = parser.parse_args(argv)
    if triton_interpreted():
        print(
            "error: TRITON_INTERPRET is set; the interpreter replaces the jitted kernels. "
            "Run with TRITON_INTERPRET unset (or 0).",
            file=sys.stderr,
        )
        return 2
    target = TARGETS[args.target]
    seen: set[str] = set()
    reports: list[KernelReport] = []
    for case in args.case:
        for dtype in args.dtype:
            if dtype in CASES[case][1]:
                reports.extend(compile_case(case, dtype, target, seen))
    over = [r for r in reports if r.shared > target.max_shared]
    print(format_table(reports, target))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"target": asdict(target), "kernels": [asdict(r) for r in reports]}, fh, indent=1)
    if over:
        names = ", ".join(f"{r.case}/{r.dtype}/{r.kernel}" for r in over)
        print(f"error: shared memory over the {target.name} limit: {names}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
