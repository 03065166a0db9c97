"""Peak resident memory of one step on CPU (Linux ``/proc``), shared by the benchmark suites.

``ru_maxrss`` is a lifetime high-water mark: after ``import torch`` it already sits above what a small
step allocates, so differences of it read 0. ``VmHWM`` can be reset to the current RSS through
``/proc/self/clear_refs`` (:mod:`bamco_fast.train.core.memory`); the peak of a step is then ``VmHWM``
after it minus the RSS before it.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc

from bamco_fast.train.core.memory import peak_rss_bytes, reset_peak_rss, rss_bytes

__all__ = ["peak_extra_rss", "peak_rss_bytes", "release_freed_memory", "reset_peak_rss", "rss_bytes"]


def release_freed_memory() -> None:
    """Collect garbage and hand freed heap pages back (glibc), so a baseline RSS is honest."""
    gc.collect()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


@contextlib.contextmanager
def peak_extra_rss():
    """``with peak_extra_rss() as peak: step()`` -> ``peak["bytes"]``: peak RSS during the step minus RSS
    before it; ``peak["total_bytes"]``: the process's peak RSS. NaN where the peak cannot be reset."""
    peak: dict[str, float] = {}
    resettable = reset_peak_rss()
    base = rss_bytes()
    yield peak
    total = peak_rss_bytes()
    peak["total_bytes"] = float(total)
    peak["bytes"] = float(total - base) if resettable else float("nan")
