"""Peak memory of training steps, logged with the loss: resident memory on CPU, allocated memory on CUDA.

On Linux the peak resident set size (``VmHWM``) can be reset through ``/proc/self/clear_refs``, so the
peak of a window of steps is read after them; on CUDA, ``torch.cuda.max_memory_allocated`` is reset the
same way. :class:`MemoryProbe` reports, per logging window, ``mem_peak_mib`` (the peak during the window)
and ``mem_now_mib`` (the memory at its end); the rise of a step over the resident model is their
difference across consecutive windows.
"""

from __future__ import annotations

import os
import resource

import torch

__all__ = ["MemoryProbe", "peak_rss_bytes", "reset_peak_rss", "rss_bytes"]


def rss_bytes() -> int:
    """Current resident set size of this process."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """This process's peak RSS since the last :func:`reset_peak_rss` (``VmHWM``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (``clear_refs`` 5); False where the kernel refuses."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


class MemoryProbe:
    """Peak and current memory of the device a run trains on (see the module docstring)."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.device = device
        self.available = True
        self.reset()

    def reset(self) -> None:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.available = reset_peak_rss()

    def read(self) -> dict[str, float]:
        """``{"mem_peak_mib", "mem_now_mib"}`` since the last :meth:`reset` (then resets); ``{}`` when the
        peak cannot be reset here."""
        if self.cuda:
            values = {
                "mem_peak_mib": torch.cuda.max_memory_allocated(self.device) / 2**20,
                "mem_now_mib": torch.cuda.memory_allocated(self.device) / 2**20,
            }
        elif self.available:
            values = {"mem_peak_mib": peak_rss_bytes() / 2**20, "mem_now_mib": rss_bytes() / 2**20}
        else:
            values = {}
        self.reset()
        return values
