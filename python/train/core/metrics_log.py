"""Run metrics: ``metrics.jsonl`` (one JSON object a line, appended) and TensorBoard when installed.

Each line holds ``step`` (global optimiser step), ``epoch``, ``split`` (``"train"`` or ``"val"``) and the
scalar values logged at that step. On resume, lines past the checkpoint's step are dropped first, so
the file of a resumed run equals that of an uninterrupted one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .checkpoint import atomic_write_bytes

__all__ = ["MetricsLog", "read_metrics"]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """All complete lines of a ``metrics.jsonl`` (a trailing partial line is ignored)."""
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


class MetricsLog:
    """Appends rows to ``run_dir/metrics.jsonl`` (and TensorBoard under ``run_dir/tensorboard``).

    Args:
        run_dir: the run folder.
        enabled: ``False`` on non-zero ranks: every call is then a no-op.
        tensorboard: also write TensorBoard scalars when ``torch.utils.tensorboard`` imports.
    """

    def __init__(self, run_dir: Path, *, enabled: bool = True, tensorboard: bool = True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self._writer = None
        if enabled and tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:  # tensorboard not installed: metrics.jsonl only
                SummaryWriter = None
            if SummaryWriter is not None:
                self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    @property
    def tensorboard_enabled(self) -> bool:
        return self._writer is not None

    def truncate_after(self, step: int) -> None:
        """Drop the rows logged after global ``step`` (before continuing a resumed run)."""
        if not self.enabled or not self.path.is_file():
            return
        rows = [r for r in read_metrics(self.path) if int(r.get("step", 0)) <= step]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write_bytes(self.path, text.encode())

    def log(self, step: int, epoch: int, split: str, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        row = {"step": int(step), "epoch": int(epoch), "split": split}
        row.update({k: float(v) for k, v in values.items()})
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        if self._writer is not None:
            for key, value in values.items():
                self._writer.add_scalar(f"{split}/{key}", float(value), int(step))

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
