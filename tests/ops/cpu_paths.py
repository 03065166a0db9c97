"""The C++ kernels at every SIMD level this CPU runs, against the float64 reference (shared by the tests).

Run as a script (``python tests/ops/cpu_paths.py``) it checks every level this CPU can run, in the thread
count of its environment, and prints one line per level; ``test_cpu_paths.py`` runs it in fresh processes
with ``OMP_NUM_THREADS=1`` and with the default thread count.
"""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F

from bamco_fast import _cpp
from bamco_fast.ops import bamco_loss as loss_op
from bamco_fast.ops import dilated_depthwise_block as block_op
from bamco_fast.ops._tolerance import check_within

_BLOCK_NAMES = ("y", "x", "dw_weight", "norm_weight", "norm_bias", "pw1_weight", "pw2_weight", "prelu")
_LOSS_NAMES = ("loss", "grad features", "grad prototypes")


def _block_results(fn, inputs, upstream):
    leaves = [t.clone().requires_grad_() for t in inputs]
    y = fn(*leaves)
    grads = torch.autograd.grad((torch.tanh(y) * upstream).sum(), leaves)
    return dict(zip(_BLOCK_NAMES, (y.detach(), *grads)))


def block_failures(dtype: torch.dtype, shape=(2, 3, 6, 5, 7, 9)) -> list[str]:
    """The cpp block (output and the 7 gradients) against ``block_op.TOLERANCES`` in ``dtype``."""
    batch, c, e, depth, height, width = shape
    gen = torch.Generator().manual_seed(sum(shape))
    inputs = [
        2 * torch.randn(batch, c, depth, height, width, generator=gen, dtype=torch.float64) + 0.5,
        0.3 * torch.randn(3, c, 3, 3, 3, generator=gen, dtype=torch.float64),
        1 + 0.2 * torch.randn(3, c, generator=gen, dtype=torch.float64),
        0.2 * torch.randn(3, c, generator=gen, dtype=torch.float64),
        0.4 * torch.randn(e, 3 * c, generator=gen, dtype=torch.float64),
        0.4 * torch.randn(c, e, generator=gen, dtype=torch.float64),
        0.25 + 0.1 * torch.randn(6, generator=gen, dtype=torch.float64),
    ]
    upstream = torch.randn(batch, c, depth, height, width, generator=gen, dtype=torch.float64)
    rounded = [t.to(dtype) for t in inputs]
    exact = _block_results(
        block_op.dilated_depthwise_block_reference, [t.double() for t in rounded], upstream
    )
    in_dtype = _block_results(block_op.dilated_depthwise_block_reference, rounded, upstream.to(dtype))
    fast = _block_results(
        lambda *a: block_op.dilated_depthwise_block(*a, backend="cpp"), rounded, upstream.to(dtype)
    )
    return check_within(block_op.TOLERANCES, dtype, fast, in_dtype, exact)


def _loss_results(fn, features, labels, prototypes):
    f = features.clone().requires_grad_()
    p = prototypes.clone().requires_grad_()
    loss = fn(f, labels, p)
    return dict(zip(_LOSS_NAMES, (loss.detach(), *torch.autograd.grad(0.37 * loss, (f, p)))))


def loss_failures(dtype: torch.dtype, mode: str, shape=(60, 3, 7, 24)) -> list[str]:
    """The cpp loss (value and both gradients) against ``loss_op.TOLERANCES`` in ``dtype``."""
    batch, views, classes, dim = shape
    gen = torch.Generator().manual_seed(sum(shape))
    features = F.normalize(torch.randn(batch, views, dim, generator=gen, dtype=torch.float64), dim=-1).to(
        dtype
    )
    prototypes = F.normalize(torch.randn(classes, dim, generator=gen, dtype=torch.float64), dim=-1).to(dtype)
    labels = torch.randint(0, classes, (batch,), generator=gen)

    def run(backend, f, p):
        return _loss_results(
            lambda f, y, p: loss_op.bamco_loss(f, y, p, 0.07, mode=mode, backend=backend), f, labels, p
        )

    exact = run("reference", features.double(), prototypes.double())
    in_dtype = run("reference", features, prototypes)
    fast = run("cpp", features, prototypes)
    return check_within(loss_op.TOLERANCES, dtype, fast, in_dtype, exact)


def level_failures(level: str) -> list[str]:
    """Every failure of both C++ ops at SIMD ``level``, float32 and float64, both loss modes."""
    failures = []
    with _cpp.forced_cpu_isa(level):
        assert _cpp.cpu_isa() == level
        for dtype in (torch.float32, torch.float64):
            name = str(dtype).replace("torch.", "")
            failures += [f"{level} block {name}: {m}" for m in block_failures(dtype)]
            for mode in ("views", "pairs"):
                failures += [f"{level} loss {mode} {name}: {m}" for m in loss_failures(dtype, mode)]
    return failures


def main() -> int:
    print(f"threads={torch.get_num_threads()} start_level={_cpp.cpu_isa()} levels={_cpp.cpu_isa_levels()}")
    failures = []
    for level in _cpp.cpu_isa_levels():
        found = level_failures(level)
        print(f"{level}: {'ok' if not found else 'FAILED'}")
        failures += found
    print("\n".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
