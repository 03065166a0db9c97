"""Assertions over an op's tolerance table (``TOLERANCES`` of its module), shared by the op tests."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from bamco_fast.ops._tolerance import Tolerance, check_within, relative_error


def assert_tight(table: Mapping[torch.dtype, Tolerance], actual, exact, what: str) -> None:
    """float64 against float64: the bound of ``table`` is its floor alone (the reference's own float64
    error is ~1e-15, so factor x that adds nothing)."""
    err, floor = relative_error(actual, exact), table[torch.float64].floor
    assert err <= floor, f"{what}: relative error {err:.3g} > {floor:.3g}"


def assert_within(table: Mapping[torch.dtype, Tolerance], dtype, fast, reference, exact, floor_scale=1.0):
    """``table[dtype]``: each named result of the fast path is within factor x the reference's own error in
    ``dtype`` + floor, both measured by the caller against the float64 ``exact``."""
    failures = check_within(table, dtype, fast, reference, exact, floor_scale=floor_scale)
    assert not failures, "\n".join(failures)
