"""Tile sweep of the Triton loss on one GPU: forward + backward time of candidate launch settings.

The GPU tiles of ``bamco_fast.kernels.bamco_loss_plan.plan_launches`` were chosen from compiler resource usage
(``python -m bamco_fast.kernels.aot``), not from timings. Every candidate below compiles for sm_90 in
bf16 without register spills and with tensor-core dots (``tests/ops/test_triton_aot.py`` holds that);
this script times each one side by side with the defaults, so one short run on a card shows which tiles
to make the defaults. Nothing is changed in the library: the script only applies ``launch_settings`` to its own
calls. The large batch (the roofline target) runs first, in case the deadline cuts the
sweep short.

Usage: ``python benchmarks/gpu_tune.py [--batches 32768 48] [--dtype bfloat16] [--dry-run]``.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch
from gpu_table import DTYPES, flops, make_inputs, ready_to_time, time_call

# name -> launch settings (fields of bamco_fast.kernels.bamco_loss_plan.LaunchSettings). sm_90 bf16 ptxas usage at
# B=32768 in the comments (registers per thread, no spills in any).
CANDIDATES: dict[str, dict[str, int]] = {
    "default": {},  # forward 128x64 d32 (165 regs), gradient 64x32 do256 (178 regs)
    "grad-do512": {"block_do": 512},  # one D slice at D=512: no recompute of the similarities (255)
    "grad-n64": {"block_n_grad": 64},  # wider key tiles in the gradient (249)
    "grad-m32": {"block_m_grad": 32},  # shorter row blocks: twice the programs, mma.sync (128)
    "grad-do128": {"block_do": 128},  # four D slices: more programs for small batches (137)
    "fwd-n128": {"block_n": 128},  # wider key tiles in the forward (233)
    "fwd-d64": {"block_d": 64},  # 64-wide D chunks in the forward (178)
    "fwd-m256": {"block_m": 256},  # taller row blocks in the forward (247)
    "stages3": {"num_stages": 3},  # deeper pipelining of the key loops (forward 173)
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[32768, 48])
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--candidates", nargs="+", choices=sorted(CANDIDATES), default=list(CANDIDATES))
    p.add_argument("--classes", type=int, default=1450)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=0.3, help="timed seconds per candidate (median)")
    p.add_argument(
        "--deadline-s", type=float, default=100.0, help="skip what is left after this many seconds"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and check the candidates; no GPU")
    return p.parse_args(argv)


def check_candidates(names) -> None:
    """Every override names a ``LaunchSettings`` field (fails loudly before any GPU time is spent)."""
    from bamco_fast.kernels.bamco_loss_plan import launch_settings

    for name in names:
        try:
            with launch_settings(**CANDIDATES[name]):
                pass
        except KeyError as exc:
            raise KeyError(f"candidate {name!r}: {exc.args[0]}") from None


def time_candidate(overrides: dict[str, int], batch: int, args) -> float:
    """Median ms of forward + backward with the launch settings ``overrides``."""
    from bamco_fast import functional
    from bamco_fast.kernels.bamco_loss_plan import launch_settings

    with launch_settings(**overrides):
        f, y, p = make_inputs(batch, args.views, args.classes, args.dim, DTYPES[args.dtype])

        def step():
            f.grad = None
            p.grad = None
            functional.bamco_loss(f, y, p, backend="triton").backward()

        return time_call(step, args.budget_s)  # after one warm-up call, which compiles this configuration


def main(argv=None) -> int:
    args = parse_args(argv)
    check_candidates(args.candidates)
    print(
        f"plan: {args.dtype}, V={args.views}, C={args.classes}, D={args.dim}, fwd+bwd, median over {args.budget_s} s each"
    )
    for batch in args.batches:
        for name in args.candidates:
            print(f"  B={batch:<6d} {name:11s} {CANDIDATES[name]}")
    if (rc := ready_to_time(args.dry_run)) is not None:
        return rc
    card = torch.cuda.get_device_name(0)
    t0 = time.time()
    print(f"\n{'card':24s} {'B':>6s} {'candidate':11s} {'ms':>9s} {'TFLOP/s':>8s} {'vs default':>10s}")
    for batch in args.batches:
        base = None
        for name in args.candidates:
            if time.time() - t0 > args.deadline_s:
                print(f"{card[:24]:24s} {batch:6d} {name:11s} {'skipped':>9s} (past {args.deadline_s:.0f} s)")
                continue
            try:
                ms = time_candidate(CANDIDATES[name], batch, args)
            except Exception as exc:  # a configuration that fails to compile or launch is reported, not fatal
                print(f"{card[:24]:24s} {batch:6d} {name:11s} {'failed':>9s} {type(exc).__name__}: {exc}")
                continue
            base = ms if name == "default" else base
            tflops = flops(batch, args.views, args.classes, args.dim) / (ms * 1e-3) / 1e12
            ratio = f"{base / ms:9.2f}x" if base else f"{'-':>10s}"
            print(f"{card[:24]:24s} {batch:6d} {name:11s} {ms:9.3f} {tflops:8.2f} {ratio}", flush=True)
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
