"""IntraClassEncoder (36 x 3 x 84 x 84 stacks): forward and forward+backward time, volumes/s and peak memory.

    pytest benchmarks/bench_encoder.py --benchmark-only [-k "cpp and 8"]

Providers: ``reference`` (plain torch blocks, the published layer stack), ``reference_cl`` (the same with
a channels-last-3d volume, forward only: it moves torch's dilated depthwise convolutions from the slow
native path to oneDNN in the forward pass, but not in the backward pass), ``cpp`` (CPU) and ``triton``
(CUDA, bfloat16: the encoder's parameters and input are cast to the dtype).

Peak memory is measured once per case in a fresh process
(``python benchmarks/bench_encoder.py --provider ... --mode ... --batch ...``): on CPU the process's peak
RSS (``VmHWM``, reset just before the step) minus its RSS just before the step, on CUDA
``torch.cuda.max_memory_allocated`` minus the memory allocated before the step. Both land in
``benchmark.extra_info`` (``peak_memory_gib``, ``peak_process_memory_gib``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import pytest
import torch

import bamco_fast
from bamco_fast.ops import dilated_depthwise_block as op

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import peak_extra_rss

_HAS_CUDA = torch.cuda.is_available()
_CPU_PROVIDERS = ["reference", "reference_cl", "cpp"]
_GPU_PROVIDERS = ["reference", "triton"]
_BATCHES = [1, 8, 48]
_MODES = ["fwd", "fwd_bwd"]
# Cases that cannot run here: the reference needs ~0.9 GB per volume for training on CPU (7.2 GB at B=8).
_TOO_BIG_CPU = {("reference", 48), ("reference_cl", 48)}


def build(provider: str, batch: int, device: str, dtype: torch.dtype):
    torch.manual_seed(0)
    backend = "reference" if provider.startswith("reference") else provider
    enc = bamco_fast.IntraClassEncoder(backend=backend).to(device=device, dtype=dtype)
    images = torch.rand(batch, 36, 3, 84, 84, device=device, dtype=dtype)
    return enc, images


def encode(enc, images, provider: str) -> torch.Tensor:
    if provider == "reference_cl":
        return enc.encode_volume(enc.volume(images).contiguous(memory_format=torch.channels_last_3d))
    return enc(images)


def step(enc, images, mode: str, provider: str) -> None:
    if mode == "fwd":
        with torch.no_grad():
            encode(enc, images, provider)
    else:
        enc.zero_grad(set_to_none=True)
        encode(enc, images, provider).sum().backward()
    if images.is_cuda:
        torch.cuda.synchronize()


def measure_peak(provider: str, mode: str, batch: int, device: str, dtype: torch.dtype) -> dict:
    """Run one step in this (fresh) process; peak memory of the step and its wall time."""
    enc, images = build(provider, batch, device, dtype)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        start = time.perf_counter()
        step(enc, images, mode, provider)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated()
        return {"peak_bytes": peak - base, "peak_total_bytes": peak, "seconds": seconds}
    with peak_extra_rss() as peak:
        start = time.perf_counter()
        step(enc, images, mode, provider)
        seconds = time.perf_counter() - start
    return {"peak_bytes": peak["bytes"], "peak_total_bytes": peak["total_bytes"], "seconds": seconds}


def peak_in_subprocess(provider: str, mode: str, batch: int, device: str, dtype: torch.dtype) -> dict:
    cmd = [sys.executable, __file__, "--provider", provider, "--mode", mode, "--batch", str(batch)]
    cmd += ["--device", device, "--dtype", str(dtype).replace("torch.", "")]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _cases():
    for provider in _GPU_PROVIDERS if _HAS_CUDA else _CPU_PROVIDERS:
        for batch in _BATCHES:
            for mode in _MODES:
                marks = []
                if not _HAS_CUDA and (provider, batch) in _TOO_BIG_CPU:
                    marks.append(pytest.mark.skip(reason="reference needs ~36 GB at B=48 (6 GB at B=8)"))
                if provider == "reference_cl" and (mode != "fwd" or batch == 48):
                    marks.append(pytest.mark.skip(reason="channels-last only changes the reference forward"))
                yield pytest.param(provider, batch, mode, marks=marks, id=f"{provider}-B{batch}-{mode}")


@pytest.mark.parametrize(("provider", "batch", "mode"), list(_cases()))
def test_encoder(benchmark, provider, batch, mode):
    device = "cuda" if _HAS_CUDA else "cpu"
    dtype = torch.bfloat16 if _HAS_CUDA else torch.float32
    table = op.backends(explicit=True)
    name = "reference" if provider.startswith("reference") else provider
    reasons = next(b for b in table if b.name == name).not_supported_reasons(torch.device(device), dtype)
    if reasons:
        pytest.skip(f"{provider}: {'; '.join(reasons)}")
    enc, images = build(provider, batch, device, dtype)
    benchmark.group = f"encoder {mode} B={batch} {str(dtype).replace('torch.', '')} {device}"
    big = batch >= 48
    slow = big or (provider == "reference" and batch > 1)
    benchmark.pedantic(
        step,
        args=(enc, images, mode, provider),
        rounds=1 if slow else 3,
        iterations=1,
        warmup_rounds=0 if slow else 1,
    )
    del enc, images
    peak = peak_in_subprocess(provider, mode, batch, device, dtype)
    best = benchmark.stats.stats.min
    benchmark.extra_info.update(
        provider=provider,
        batch=batch,
        mode=mode,
        volumes_per_s=batch / best,
        peak_memory_gib=peak["peak_bytes"] / 2**30,
        peak_process_memory_gib=peak["peak_total_bytes"] / 2**30,
        threads=torch.get_num_threads(),
        device=torch.cuda.get_device_name() if _HAS_CUDA else "cpu",
        torch=torch.__version__,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="One encoder step in this process; prints peak memory as JSON."
    )
    parser.add_argument("--provider", required=True, choices=["reference", "reference_cl", "cpp", "triton"])
    parser.add_argument("--mode", required=True, choices=_MODES)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args(argv)
    result = measure_peak(args.provider, args.mode, args.batch, args.device, getattr(torch, args.dtype))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
