"""Wall-clock time per named phase of one step at a time: the part the step profilers share.

:class:`PhaseTimer` holds the phase names, the running sums (``times``), the hook handles to remove on
:meth:`PhaseTimer.close` and the step's start; a profiler subclass adds its own hooks and timed blocks
(:mod:`step_profile` for the knowledge-space step, :mod:`vqa_step_profile` for the VQA step). Times are
``time.perf_counter`` seconds, CPU only (no device synchronisation).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence


class PhaseTimer:
    """Sums of seconds per phase since :meth:`start`; :meth:`stop` returns them with the ``total``.

    Args:
        phases: the phase names, in table order; every one starts each step at 0.
    """

    def __init__(self, phases: Sequence[str]) -> None:
        self.phases = tuple(phases)
        self.times: dict[str, float] = {}
        self._started = 0.0
        self._handles = []

    def close(self) -> None:
        """Remove the hooks registered in ``self._handles``."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _add(self, name: str, seconds: float) -> None:
        self.times[name] = self.times.get(name, 0.0) + seconds

    def start(self) -> None:
        """Begin a step: every phase at 0 and the total's clock started."""
        self.times = dict.fromkeys(self.phases, 0.0)
        self._started = time.perf_counter()

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time the block under ``name`` (one of the phases)."""
        if name not in self.phases:
            raise ValueError(f"phase must be one of {self.phases}, got {name!r}")
        start = time.perf_counter()
        try:
            yield
        finally:
            self._add(name, time.perf_counter() - start)

    def stop(self) -> dict[str, float]:
        """Phase times of the step and its ``total`` wall time since :meth:`start`."""
        out = dict(self.times)
        out["total"] = time.perf_counter() - self._started
        return out
