"""Seeded percentile bootstrap for the mean of per-question scores, and mean/std across runs.

For per-question values ``x`` of shape ``(n,)`` (float64), :func:`bootstrap_ci` draws ``n_boot``
resamples of ``n`` indices with replacement from ``numpy.random.default_rng(seed)``, takes each
resample's mean and returns the ``(1 - level) / 2`` and ``(1 + level) / 2`` percentiles (linear
interpolation). Resampling is over questions, inside the question set of each protocol.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = ["bootstrap_ci", "mean_std"]

_CHUNK_ELEMENTS = 4_000_000  # resample in chunks of about this many indices to bound memory


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, *, n_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``mean(values)``; ``(nan, nan)`` for no values or ``n_boot == 0``.

    Args:
        values: per-question scores, shape ``(n,)``.
        n_boot: number of resamples (``>= 0``).
        seed: seed of the numpy generator (same seed, same interval).
        level: coverage of the interval, in ``(0, 1)``.
    """
    if n_boot < 0:
        raise ValueError(f"n_boot must be >= 0, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[0]
    if n == 0 or n_boot == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, _CHUNK_ELEMENTS // n)
    means = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, per_chunk):
        stop = min(n_boot, start + per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = x[idx].mean(axis=1)
    low, high = np.quantile(means, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return (float(low), float(high))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (``ddof=1``; ``0.0`` for a single value) of run scores."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        return (math.nan, math.nan)
    return (float(x.mean()), float(x.std(ddof=1)) if x.size > 1 else 0.0)
