"""GPU timing of the intra-class encoder: volumes/s and peak memory, Triton (bf16) against the reference.

    python benchmarks/gpu_encoder.py [--batch 48] [--steps 5] [--json out.json]

Providers (36 x 3 x 84 x 84 stacks, forward and forward+backward):
  reference  the plain-torch encoder in float32 under ``torch.autocast(bfloat16)`` (cuDNN convolutions in
             bf16, normalisations in fp32: the published training regime)
  triton     the encoder cast to bfloat16 with the fused Triton blocks
Times are the median of ``--steps`` CUDA-event-timed steps after two warm-up steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys

import torch

import bamco_fast


def _build(provider: str, batch: int):
    torch.manual_seed(0)
    if provider == "reference":
        enc = bamco_fast.IntraClassEncoder(backend="reference").cuda()
        images = torch.rand(batch, 36, 3, 84, 84, device="cuda")
        ctx = lambda: torch.autocast("cuda", dtype=torch.bfloat16)  # noqa: E731
    else:
        enc = bamco_fast.IntraClassEncoder(backend="triton").cuda().bfloat16()
        images = torch.rand(batch, 36, 3, 84, 84, device="cuda", dtype=torch.bfloat16)
        ctx = contextlib.nullcontext
    return enc, images, ctx


def time_provider(provider: str, mode: str, batch: int, steps: int) -> dict:
    torch.cuda.empty_cache()
    enc, images, ctx = _build(provider, batch)

    def step():
        if mode == "fwd":
            with torch.no_grad(), ctx():
                enc(images)
        else:
            enc.zero_grad(set_to_none=True)
            with ctx():
                out = enc(images)
            out.float().sum().backward()

    for _ in range(2):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        step()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    seconds = statistics.median(times)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    return {
        "provider": provider,
        "mode": mode,
        "batch": batch,
        "seconds": seconds,
        "volumes_per_s": batch / seconds,
        "peak_gib": peak,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_encoder: no CUDA device", file=sys.stderr)
        return 1
    rows = []
    print(f"device: {torch.cuda.get_device_name()}  torch {torch.__version__}  batch {args.batch}")
    print(f"{'mode':8} {'provider':10} {'ms/step':>10} {'volumes/s':>10} {'peak GiB':>9} {'speedup':>8}")
    for mode in ("fwd", "fwd_bwd"):
        ref = None
        for provider in ("reference", "triton"):
            row = time_provider(provider, mode, args.batch, args.steps)
            rows.append(row)
            ref = ref or row["seconds"]
            print(
                f"{mode:8} {provider:10} {row['seconds'] * 1e3:10.1f} {row['volumes_per_s']:10.1f} "
                f"{row['peak_gib']:9.2f} {ref / row['seconds']:7.2f}x"
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
