"""How close a fast path must be to the exact answer: the rule every op's tolerance table uses.

A fast path (a fused backend, a dtype below float64) is judged against the float64 run of the reference,
not against another low-precision path: comparing two float32 paths tests their summation order, which
differs between machines (SIMD width, thread count), not their correctness. The yardstick is the error
the reference itself makes in the same dtype, measured on the same inputs in the same test:

    err(x) = max |x - exact| / max |exact|            (per tensor; ``exact`` is the float64 reference)
    err(fast) <= factor * err(reference in the dtype) + floor

``floor`` covers the reference being accidentally exact on a tensor. In float64 the reference is the
exact answer itself, so the bound is the floor alone and stays tight.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Tolerance:
    """Allowed error of a fast path in one dtype (see the module docstring).

    Attributes:
        factor: multiple of the reference's own error in that dtype.
        floor: added to the bound; relative to ``max |exact|`` of the tensor.
    """

    factor: float
    floor: float

    def bound(self, reference_error: float) -> float:
        """The largest relative error a fast path may make when the reference makes ``reference_error``."""
        return self.factor * reference_error + self.floor


def relative_error(actual: torch.Tensor, exact: torch.Tensor) -> float:
    """``max |actual - exact| / max |exact|`` in float64; 0 for empty tensors.

    When ``exact`` is all zeros the absolute error is returned, so a wrong non-zero answer still counts.
    """
    if exact.numel() == 0:
        return 0.0
    diff = (actual.detach().double().cpu() - exact.detach().double().cpu()).abs().max().item()
    scale = exact.detach().double().abs().max().item()
    return diff / scale if scale > 0 else diff


Tensors = torch.Tensor | Sequence[torch.Tensor]


def group_error(actual: Tensors, exact: Tensors) -> float:
    """:func:`relative_error` of one tensor, or the worst one of a group (e.g. all parameter gradients)."""
    if isinstance(actual, torch.Tensor):
        return relative_error(actual, exact)  # type: ignore[arg-type]
    return max((relative_error(a, e) for a, e in zip(actual, exact, strict=True)), default=0.0)


def check_within(
    table: Mapping[torch.dtype, Tolerance],
    dtype: torch.dtype,
    fast: Mapping[str, Tensors],
    reference: Mapping[str, Tensors],
    exact: Mapping[str, Tensors],
    floor_scale: float = 1.0,
) -> list[str]:
    """Every entry of ``fast`` whose error exceeds the bound of ``table[dtype]``, as readable lines.

    Args:
        table: an op's tolerance table (``TOLERANCES`` of the op's module).
        dtype: the dtype both ``fast`` and ``reference`` ran in.
        fast, reference, exact: the same named tensors (outputs, gradients) from the fast path, the
            reference run in ``dtype`` and the reference run in float64. An entry may be a sequence of
            tensors (a group, such as every parameter gradient of a model): its error is the worst
            tensor's, which is how an ill-conditioned tensor on which the reference happens to be
            nearly exact is kept from deciding the verdict alone.

        floor_scale: multiplies the floor, for results computed from inputs far from O(1) (e.g. logits of
            size 1 / T: a fixed number of their last-place units is 1 / T times the O(1) floor).

    Returns:
        An empty list when every entry is within its bound.
    """
    tol = table[dtype]
    if floor_scale != 1.0:
        tol = Tolerance(tol.factor, tol.floor * floor_scale)
    failures = []
    for name, value in fast.items():
        got = group_error(value, exact[name])
        ref = group_error(reference[name], exact[name])
        if not got <= tol.bound(ref):
            failures.append(
                f"{name}: error {got:.3g} > {tol.factor:g} x reference error {ref:.3g} + {tol.floor:.3g} "
                f"({str(dtype).replace('torch.', '')})"
            )
    return failures
