"""PNG of a run's curves from ``metrics.jsonl``: training losses per step, validation metrics per eval.

matplotlib is imported inside :func:`plot_metrics` with the non-interactive ``Agg`` backend; it comes with
the ``train`` extra (``pip install bamco_fast[train]``), and without it no plot is drawn (a note says so).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

from .checkpoint import atomic_write_bytes
from .metrics_log import read_metrics

__all__ = ["plot_metrics"]

_SKIP = {"step", "epoch", "split", "lr", "samples_per_s", "seconds"}


def plot_metrics(
    metrics_path: Path, png_path: Path, *, title: str = "", val_keys: Sequence[str] | None = None
) -> Path | None:
    """Draw the training loss terms (left) and the validation metrics (right) into ``png_path``.

    Args:
        metrics_path: a ``metrics.jsonl``.
        png_path: output image (written atomically).
        title: figure title.
        val_keys: validation keys to draw (default: every numeric key of the ``val`` rows, at most 8).

    Returns:
        ``png_path``, or ``None`` when there is nothing to draw yet.
    """
    rows = read_metrics(Path(metrics_path))
    train = [r for r in rows if r.get("split") == "train"]
    val = [r for r in rows if r.get("split") == "val"]
    if not train and not val:
        return None
    try:
        import matplotlib
    except ImportError:
        print(f"note: {png_path} not drawn: matplotlib is not installed (pip install bamco_fast[train])")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    train_keys = sorted({k for r in train for k in r if k not in _SKIP})
    for key in train_keys:
        points = [(r["step"], r[key]) for r in train if key in r]
        left.plot([p[0] for p in points], [p[1] for p in points], label=key)
    left.set_xlabel("step")
    left.set_title("training")
    if train_keys:
        left.legend(fontsize=8)
    if val_keys is None:
        val_keys = sorted({k for r in val for k in r if k not in _SKIP})[:8]
    for key in val_keys:
        points = [(r["step"], r[key]) for r in val if key in r]
        right.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=key)
    right.set_xlabel("step")
    right.set_title("validation")
    if val_keys:
        right.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(Path(png_path), buffer.getvalue())
    return Path(png_path)
