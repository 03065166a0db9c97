"""Timing table of the balanced contrastive loss on one GPU: Triton kernels vs the pure-torch reference.

Each row times forward + backward (``loss.backward()``) with CUDA events after a warm-up call (JIT
compilation is excluded), for features (B, V, D), prototypes (C, D), mode "views". Columns:

* ms: median time of one forward + backward.
* TFLOP/s: ``8 * A * M * D / time`` with A = V*B anchors and M = A + C keys (the FLOPs of a
  recompute-based forward + backward; the reference and the kernels are charged the same count).
* %roof: that rate as a share of the dense bf16 matmul rate measured in the same run
  (``torch.matmul`` of 8192 x 8192 x 8192 bf16), so it is comparable across cards.
* peak MiB: peak memory allocated during the call minus what was allocated before it.
* dev us / kernels: for the Triton rows up to ``--max-profile-batch``, the device time of one forward +
  backward (the durations of its GPU kernels and memsets, from ``torch.profiler``, without the host's
  launch gaps) and the number of kernels it launches.

Usage: ``python benchmarks/gpu_table.py [--batches 48 1024 ...] [--dtypes float32 bfloat16] [--dry-run]``.
The reference is skipped above ``--max-reference-batch`` (its (A, M) temporaries would not fit).
"""

import argparse
import statistics
import sys
import time

import torch
import torch.nn.functional as F

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, nargs="+", default=[48, 1024, 4096, 32768])
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["bfloat16", "float32"])
    p.add_argument("--classes", type=int, default=1450)
    p.add_argument("--dim", type=int, default=512)
    p.add_argument("--views", type=int, default=2)
    p.add_argument("--temperature", type=float, default=0.07)
    p.add_argument("--max-reference-batch", type=int, default=4096)
    p.add_argument(
        "--max-profile-batch", type=int, default=1024, help="device time for Triton rows up to this B"
    )
    p.add_argument("--budget-s", type=float, default=0.3, help="timed seconds per row (at least 1 rep)")
    p.add_argument(
        "--deadline-s", type=float, default=110.0, help="skip the remaining rows after this many seconds"
    )
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit (no GPU needed)")
    return p.parse_args(argv)


def plan(args: argparse.Namespace) -> list[tuple[str, int, str]]:
    """(backend, batch, dtype name) rows in the order they are timed."""
    rows = []
    for dtype in args.dtypes:
        for batch in args.batches:
            rows.append(("triton", batch, dtype))
            if batch <= args.max_reference_batch:
                rows.append(("reference", batch, dtype))
    return rows


def flops(batch: int, views: int, classes: int, dim: int) -> float:
    anchors = views * batch
    return 8.0 * anchors * (anchors + classes) * dim


def time_call(fn, budget_s: float, max_reps: int = 50) -> float:
    """Median milliseconds of ``fn()`` over repetitions filling about ``budget_s`` seconds."""
    fn()  # warm-up: compilation, allocator
    torch.cuda.synchronize()
    times: list[float] = []
    spent = 0.0
    while len(times) < max_reps and (not times or spent < budget_s):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        ms = start.elapsed_time(end)
        times.append(ms)
        spent += ms / 1000.0
    return statistics.median(times)


def ready_to_time(dry_run: bool) -> int | None:
    """None when timing can start; else the exit code (0 after a dry run, 2 without a CUDA device)."""
    if dry_run:
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device; use --dry-run to print the plan only", file=sys.stderr)
        return 2
    return None


def device_time_us(fn, reps: int = 20) -> tuple[float, float]:
    """(device microseconds, GPU kernels) per call of ``fn``: the summed durations of the GPU activities
    recorded by ``torch.profiler`` over ``reps`` calls, divided by ``reps`` (host gaps excluded)."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            fn()
        torch.cuda.synchronize()
    gpu = [e for e in prof.events() if e.device_type == DeviceType.CUDA]
    return sum(e.device_time_total for e in gpu) / reps, len(gpu) / reps


def bf16_roofline_tflops(n: int = 8192) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    ms = time_call(lambda: torch.matmul(a, b), budget_s=0.2)
    return 2.0 * n**3 / (ms * 1e-3) / 1e12


def make_inputs(batch, views, classes, dim, dtype, seed=0):
    gen = torch.Generator(device="cuda").manual_seed(seed)
    f = F.normalize(torch.randn(batch, views, dim, device="cuda", generator=gen), dim=-1).to(dtype)
    p = F.normalize(torch.randn(classes, dim, device="cuda", generator=gen), dim=-1).to(dtype)
    y = torch.randint(0, classes, (batch,), device="cuda", generator=gen)
    return f.requires_grad_(True), y, p.requires_grad_(True)


def run_row(backend, batch, dtype_name, args):
    from bamco_fast import functional

    f, y, p = make_inputs(batch, args.views, args.classes, args.dim, DTYPES[dtype_name])

    def step():
        f.grad = None
        p.grad = None
        loss = functional.bamco_loss(f, y, p, args.temperature, backend=backend)
        loss.backward()

    try:
        step()  # compile / warm up outside the peak-memory window
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        step()
        torch.cuda.synchronize()
        peak_mib = (torch.cuda.max_memory_allocated() - base) / 2**20
        ms = time_call(step, args.budget_s)
        device = device_time_us(step) if backend == "triton" and batch <= args.max_profile_batch else None
    except torch.OutOfMemoryError:
        torch.cuda.empty_cache()
        return None, None, None
    return ms, peak_mib, device


def main(argv=None) -> int:
    args = parse_args(argv)
    rows = plan(args)
    print(
        f"plan: {len(rows)} rows, V={args.views}, C={args.classes}, D={args.dim}, T={args.temperature}, "
        f"fwd+bwd, mode=views"
    )
    for backend, batch, dtype in rows:
        print(f"  {backend:9s} B={batch:<6d} {dtype}")
    if (rc := ready_to_time(args.dry_run)) is not None:
        return rc
    card = torch.cuda.get_device_name(0)
    t0 = time.time()
    roof = bf16_roofline_tflops()
    print(f"dense bf16 matmul roofline on {card}: {roof:.1f} TFLOP/s")
    results: list[tuple] = []
    for backend, batch, dtype in rows:
        if time.time() - t0 > args.deadline_s:
            print(f"  skip {backend} B={batch} {dtype}: past the {args.deadline_s:.0f} s deadline")
            results.append((backend, batch, dtype, "skipped", None, None))
            continue
        ms, peak, device = run_row(backend, batch, dtype, args)
        results.append((backend, batch, dtype, ms, peak, device))
        status = "OOM" if ms is None else f"{ms:.3f} ms, peak {peak:.1f} MiB"
        print(f"  done {backend} B={batch} {dtype}: {status} ({time.time() - t0:.0f} s)", flush=True)
        torch.cuda.empty_cache()

    header = (
        f"{'card':24s} {'backend':9s} {'B':>6s} {'V':>2s} {'C':>5s} {'D':>4s} {'dtype':9s} "
        f"{'ms':>10s} {'TFLOP/s':>8s} {'%roof':>6s} {'peak MiB':>10s} {'dev us':>8s} {'kernels':>7s}"
    )
    print("\n" + header)
    print("-" * len(header))
    for backend, batch, dtype, ms, peak, device in results:
        if ms is None or isinstance(ms, str):
            cells = f"{ms or 'OOM':>10s} {'-':>8s} {'-':>6s} {'-':>10s} {'-':>8s} {'-':>7s}"
        else:
            tflops = flops(batch, args.views, args.classes, args.dim) / (ms * 1e-3) / 1e12
            cells = f"{ms:10.3f} {tflops:8.2f} {100 * tflops / roof:6.1f} {peak:10.1f}"
            cells += f" {device[0]:8.1f} {device[1]:7.1f}" if device else f" {'-':>8s} {'-':>7s}"
        print(
            f"{card[:24]:24s} {backend:9s} {batch:6d} {args.views:2d} {args.classes:5d} {args.dim:4d} "
            f"{dtype:9s} {cells}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
