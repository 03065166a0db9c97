"""bamco_loss forward and forward+backward: providers side by side, with GFLOP/s and peak memory.

Providers: ``official`` (the published per-element computation, benchmarks/official_style.py),
``reference`` (the library's vectorised torch reference), ``cpp`` (the fused C++ kernel) and ``triton``
(GPU only). GFLOP/s count the minimal 6*A*M*D flops of forward+backward (2*A*M*D for forward), A = V*B
anchors, M = A + C keys; ``sgemm`` times a plain matrix product in the same run as the ceiling.

Run: ``pytest benchmarks/bench_bamco_loss.py --benchmark-only`` (add ``--benchmark-json out.json``).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import HAS_CUDA, peak_extra_memory_mib, synchronize
from official_style import official_style_loss

from bamco_fast import functional
from bamco_fast.ops import bamco_loss as op

D = 512
VIEWS = 2
_HAS_CPP = op.backends()[1].availability() is None

# (B, C, providers, modes): the grid B in {48, 1024, 4096} x C in {28, 285, 1450}, forward and
# forward+backward. The official peer's per-key Python loop and dense (A, M) temporaries make it the
# small-batch peer (B <= 1024); B = 16384 runs only fused (the dense reference would need tens of GiB).
_ALL = ("official", "reference", "cpp")
_MODES_BOTH = ("fwd", "full")
_CASES = [
    *[(b, c, _ALL, _MODES_BOTH) for b in (48, 1024) for c in (28, 285, 1450)],
    *[(4096, c, ("reference", "cpp"), _MODES_BOTH) for c in (28, 285, 1450)],
    (16384, 1450, ("cpp",), ("full",)),
]
_PARAMS = [
    pytest.param(b, c, p, m, id=f"B{b}-C{c}-{p}-{m}")
    for b, c, providers, modes in _CASES
    for p in providers
    for m in modes
]
_ROUNDS = {48: 30, 1024: 5, 4096: 1, 16384: 1}


def inputs(batch, classes, device="cpu", dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    features = F.normalize(torch.randn(batch, VIEWS, D, generator=gen), dim=-1).to(device, dtype)
    prototypes = F.normalize(torch.randn(classes, D, generator=gen), dim=-1).to(device, dtype)
    labels = torch.randint(0, classes, (batch,), generator=gen).to(device)
    return features, labels, prototypes


def loss_fn(provider):
    if provider == "official":
        return official_style_loss
    return lambda f, y, p: functional.bamco_loss(f, y, p, backend=provider)


def run_case_prepare(provider, batch, classes, mode):
    features, labels, prototypes = inputs(batch, classes)
    return provider, mode, features, labels, prototypes


def run_case(prep):
    """One timed call: forward (no grad) or forward + backward w.r.t. features and prototypes."""
    provider, mode, features, labels, prototypes = prep
    fn = loss_fn(provider)
    if mode == "fwd":
        with torch.no_grad():
            return fn(features, labels, prototypes)
    f = features.detach().requires_grad_()
    p = prototypes.detach().requires_grad_()
    loss = fn(f, labels, p)
    loss.backward()
    return loss


def flops(batch, classes, mode):
    anchors = VIEWS * batch
    keys = anchors + classes
    return (2 if mode == "fwd" else 6) * anchors * keys * D


@pytest.mark.parametrize("batch,classes,provider,mode", _PARAMS)
def test_bamco_loss_cpu(benchmark, record, batch, classes, provider, mode):
    if provider == "cpp" and not _HAS_CPP:
        pytest.skip("bamco_fast._C not built")
    prep = run_case_prepare(provider, batch, classes, mode)
    if batch <= 1024:  # every provider computes the same loss
        expected = op.bamco_loss_reference(*prep[2:])
        torch.testing.assert_close(run_case(prep).detach(), expected.detach(), rtol=1e-4, atol=1e-4)
    benchmark.group = f"bamco_loss cpu B={batch} C={classes} {mode}"
    rounds = _ROUNDS[batch]
    benchmark.pedantic(
        run_case, args=(prep,), rounds=rounds, iterations=1, warmup_rounds=1 if rounds > 1 else 0
    )
    info = record("cpu", provider=provider, B=batch, C=classes, D=D, mode=mode)
    info["gflops"] = flops(batch, classes, mode) / benchmark.stats.stats.min / 1e9
    info["peak_extra_mib"] = peak_extra_memory_mib(
        "bench_bamco_loss",
        "run_case",
        {"provider": provider, "batch": batch, "classes": classes, "mode": mode},
        warmup={"batch": 4},
    )


@pytest.mark.parametrize("size", [1024, 4096])
def test_sgemm_ceiling(benchmark, record, size):
    """The machine's matrix-product rate at the loss's inner dimension (the ceiling for the fused kernel)."""
    a = torch.randn(size, D)
    b = torch.randn(D, size)
    benchmark.group = "sgemm ceiling"
    benchmark.pedantic(torch.mm, args=(a, b), rounds=10, iterations=1, warmup_rounds=2)
    record("cpu", provider="sgemm", M=size, N=size, K=D)["gflops"] = (
        2 * size * size * D / benchmark.stats.stats.min / 1e9
    )


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("batch", [48, 1024, 4096, 32768])
@pytest.mark.parametrize("provider", ["reference", "triton"])
def test_bamco_loss_cuda(benchmark, record, provider, batch, dtype):
    if provider == "reference" and batch > 4096:
        pytest.skip("the dense reference does not fit at this batch")
    features, labels, prototypes = inputs(batch, 1450, "cuda", dtype)
    prep = (provider, "full", features, labels, prototypes)

    def call():
        run_case(prep)
        synchronize("cuda")

    benchmark.group = f"bamco_loss cuda B={batch} {dtype} full"
    torch.cuda.reset_peak_memory_stats()
    benchmark.pedantic(call, rounds=10 if batch < 32768 else 3, iterations=1, warmup_rounds=2)
    info = record("cuda", provider=provider, B=batch, C=1450, D=D, mode="full", dtype=str(dtype))
    info["tflops_8amd"] = 8 * VIEWS * batch * (VIEWS * batch + 1450) * D / benchmark.stats.stats.min / 1e12
    info["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
