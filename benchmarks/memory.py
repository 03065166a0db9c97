"""Peak resident memory of one step on CPU (Linux ``/proc``), shared by the benchmark suites.

``ru_maxrss`` is a lifetime high-water mark: after ``import torch`` it already sits above what a small
step allocates, so differences of it read 0. ``VmHWM`` can be reset to the current RSS through
``/proc/self/clear_refs``; the peak of a step is then ``VmHWM`` after it minus the RSS before it.
"""

from __future__ import annotations

import contextlib
import os
import resource


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak RSS since the last :func:`reset_peak_rss` (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (``clear_refs`` 5); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


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
