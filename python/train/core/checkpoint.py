"""Training checkpoints: atomic files, a rolling window of the last k, the best on validation, exact resume.

Layout inside a run folder::

    checkpoints/step_00000120.pt   rolling checkpoints (the last ``keep_last`` are kept)
    checkpoints/best.pt            the checkpoint with the best validation selection metric: a second
                                   name (hard link) of its step file, not a second copy of the data
    checkpoints/latest.json        {"file": "step_00000120.pt", "step": 120}: the newest complete one

Every file is written to a temporary name in the same folder, flushed and fsync'ed, then renamed over
the target (and the folder fsync'ed), so a crash or Ctrl-C at any moment leaves either the old file or
the new one, never a half-written one; an older checkpoint is only deleted after the newer one and the
``latest.json`` pointer naming it are on disk. Files get the normal mode ``0o666 & ~umask`` (:func:`bamco_fast.data.jsonio.atomic_write_bytes`).

A checkpoint is a dict (``torch.save``) holding ``format``, ``config`` (the resolved config), ``fingerprint``
(hash of its numerics-relevant fields), ``step``, ``epoch``, ``batch_in_epoch``, ``model`` (trainable
parameters and buffers), ``optimizer``, ``scheduler``, ``data`` (the stage's data-order state), ``rng``
(python, numpy, torch CPU and CUDA generator states) and ``best`` (selection metric value and step).
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import re
from pathlib import Path
from typing import Any

import torch

from bamco_fast.data.jsonio import atomic_link, atomic_write_bytes

from .config import diff_configs

__all__ = [
    "FORMAT",
    "CheckpointError",
    "CheckpointManager",
    "atomic_write_bytes",
    "capture_rng_state",
    "load_checkpoint",
    "restore_rng_state",
]

FORMAT = "bamco_fast.train.checkpoint/1"
_STEP_FILE = re.compile(r"^step_(\d{8,})\.pt$")


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or belongs to another configuration."""

    user_error = True  # reported in one line by the command-line error boundary


# ---------------------------------------------------------------------------------------------------
# RNG states


def capture_rng_state() -> dict[str, Any]:
    """States of python ``random``, numpy (if installed), torch CPU and every CUDA device."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])
    if "cuda" in state and torch.cuda.is_available():
        states = state["cuda"]
        if len(states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(states)


# ---------------------------------------------------------------------------------------------------
# reading


def load_checkpoint(
    path: Path, *, config: dict[str, Any] | None = None, fingerprint: str | None = None
) -> dict:
    """Read and validate a checkpoint; refuse one of another configuration.

    Args:
        path: a ``.pt`` checkpoint file, or a run folder / its ``checkpoints`` folder (the latest is used).
        config, fingerprint: the current resolved config dict and its fingerprint; when given, a checkpoint
            whose fingerprint differs raises :class:`CheckpointError` listing the differing keys.

    Raises:
        CheckpointError: missing, unreadable/corrupt, not a checkpoint of this format, or another config.
    """
    path = resolve_checkpoint_path(Path(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # truncated zip, garbage bytes, pickle errors: all "corrupt"
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a torch checkpoint ({type(exc).__name__}: {exc}); "
            f"resume from another one in {path.parent} (e.g. an older step_*.pt)"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise CheckpointError(f"checkpoint {path}: expected format {FORMAT!r}, got {got!r}")
    missing = [k for k in ("config", "fingerprint", "step", "model", "optimizer", "rng") if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} is incomplete: missing {missing}")
    if fingerprint is not None and state["fingerprint"] != fingerprint:
        lines = diff_configs(state["config"], config) if config is not None else []
        detail = "; ".join(lines[:12]) + (f"; ... ({len(lines)} keys)" if len(lines) > 12 else "")
        raise CheckpointError(
            f"--resume {path}: the checkpoint was written by another configuration "
            f"(checkpoint -> current: {detail or 'fingerprints differ'}); resume with the same config, "
            f"or start a new run in another --out folder"
        )
    return state


def resolve_checkpoint_path(path: Path) -> Path:
    """A checkpoint file, or the newest complete checkpoint of a run folder / checkpoints folder."""
    if path.is_file():
        return path
    if path.is_dir():
        folder = path / "checkpoints" if (path / "checkpoints").is_dir() else path
        latest = latest_checkpoint(folder)
        if latest is None:
            raise CheckpointError(f"--resume {path}: no checkpoint found in {folder}")
        return latest
    raise CheckpointError(f"--resume: checkpoint not found: {path} (expected a .pt file or a run folder)")


def latest_checkpoint(folder: Path) -> Path | None:
    """The file named by ``latest.json``, else the highest-step ``step_*.pt``; ``None`` if there is none."""
    pointer = folder / "latest.json"
    if pointer.is_file():
        try:
            name = json.loads(pointer.read_text(encoding="utf-8"))["file"]
        except (json.JSONDecodeError, KeyError, TypeError):
            name = None
        if name and (folder / name).is_file():
            return folder / name
    steps = sorted(_step_files(folder))
    return steps[-1][1] if steps else None


def _step_files(folder: Path) -> list[tuple[int, Path]]:
    if not folder.is_dir():
        return []
    out = []
    for child in folder.iterdir():
        match = _STEP_FILE.match(child.name)
        if match:
            out.append((int(match.group(1)), child))
    return out


# ---------------------------------------------------------------------------------------------------
# writing


class CheckpointManager:
    """Writes rolling and best checkpoints of one run into ``run_dir/checkpoints``.

    Args:
        run_dir: the run folder.
        keep_last: how many rolling ``step_*.pt`` files to keep (>= 1); ``best.pt`` is separate.
    """

    def __init__(self, run_dir: Path, keep_last: int = 3):
        if keep_last < 1:
            raise ValueError(f"CheckpointManager: keep_last must be >= 1, got {keep_last}")
        self.folder = Path(run_dir) / "checkpoints"
        self.keep_last = keep_last

    def save(self, state: dict[str, Any], *, best: bool = False) -> Path:
        """Write ``state`` as ``step_<step>.pt``, point ``latest.json`` at it, prune; with ``best``, make
        ``best.pt`` a second name of that file (a hard link: pruning the step file keeps the data)."""
        state = {"format": FORMAT, **state}
        step = int(state["step"])
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        path = self.folder / f"step_{step:08d}.pt"
        atomic_write_bytes(path, data)
        atomic_write_bytes(
            self.folder / "latest.json", (json.dumps({"file": path.name, "step": step}) + "\n").encode()
        )
        if best:
            atomic_link(path, self.folder / "best.pt")
        self._prune()
        return path

    def _prune(self) -> None:
        files = sorted(_step_files(self.folder))
        for _, path in files[: max(0, len(files) - self.keep_last)]:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
