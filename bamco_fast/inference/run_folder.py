"""Rebuild the model of a VQA run folder.

A run folder (``python -m bamco_fast.train vqa``) holds ``run.json`` (what was resolved at training time:
the knowledge-space folder or the plain towers, the knowledge file and image folder of the intra-class
bank with the questions it leaves out, the LLM) and ``model/`` (the trainable weights:
:meth:`~bamco_fast.models.vqa.VQAModel.save_trainable`). The frozen towers and knowledge space are not
copied: the run refers to the knowledge-space folder, which must still exist when the run is loaded (or
be given again with ``knowledge_space=``). Relative paths in ``run.json`` are relative to the run folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "MODEL_DIR",
    "RUN_INFO",
    "LoadedRun",
    "RunError",
    "load_knowledge_space",
    "load_run",
    "read_run_info",
]

RUN_INFO = "run.json"
MODEL_DIR = "model"


class RunError(ValueError):
    """A run folder, knowledge-space folder or model cannot be used; the message says what is missing."""


def resolve_in(base: Path, value: str) -> str:
    """``value`` as stored in a run file: ``""`` stays empty, a relative path is taken relative to ``base``."""
    if not value:
        return ""
    path = Path(value)
    return str(path if path.is_absolute() else (Path(base) / path))


def load_knowledge_space(folder: str | Path, *, device: torch.device | str | None = None) -> nn.Module:
    """``KnowledgeSpace.load`` of a knowledge-space folder, or of the one inside a pretraining run folder."""
    from bamco_fast.models.knowledge_space import KnowledgeSpace

    path = Path(folder)
    if not path.is_dir():
        raise RunError(
            f"knowledge space: expected the folder of a pretraining run (python -m bamco_fast.train pretrain) "
            f"or of a saved knowledge space, got {str(folder)!r}, which "
            + ("is a file" if path.exists() else "does not exist")
        )
    candidates = [path, path / "knowledge_space", path / "best" / "knowledge_space", path / "model"]
    errors = []
    for candidate in candidates:
        if candidate.is_dir():
            try:
                return KnowledgeSpace.load(candidate, device=device)
            except (FileNotFoundError, ValueError, KeyError, OSError) as exc:
                errors.append(f"{candidate}: {exc}")
    raise RunError(
        f"knowledge space: no saved knowledge space found in {path} (looked in "
        f"{', '.join(str(c) for c in candidates)}): {'; '.join(errors) or 'none of these folders exist'}"
    )


def read_run_info(run_dir: str | Path) -> dict[str, Any]:
    """The ``run.json`` of a VQA run folder (a :class:`RunError` naming the folder when absent or broken)."""
    from bamco_fast.data.jsonio import read_json

    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise RunError(
            f"--run {run_dir}: not a VQA run folder (no {RUN_INFO}; expected the output folder of "
            "python -m bamco_fast.train vqa)"
        )
    try:
        info = read_json(path, "VQA run description")
    except ValueError as exc:
        raise RunError(str(exc)) from None
    if not isinstance(info, dict):
        raise RunError(f"{path}: expected a JSON object, got {type(info).__name__}")
    return info


@dataclass
class LoadedRun:
    """A trained run ready to answer: the model, its run info, the image preprocessing it was trained with."""

    model: nn.Module
    info: dict[str, Any]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device
    folder: Path | None = None


def pick_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else as ``torch.device`` (a clear error if bad)."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise RunError(f"--device: expected auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"--device: {device!r} requested but CUDA is not available")
    return dev


def _bank(space: nn.Module, spec: dict[str, Any], run_dir: Path):
    from bamco_fast.models.intra_bank import build_intra_bank

    return build_intra_bank(
        space,
        resolve_in(run_dir, spec["knowledge_file"]),
        resolve_in(run_dir, spec["image_root"]),
        image_map=resolve_in(run_dir, spec.get("image_map") or "") or None,
        seed=spec["seed"],
        sampling=spec["sampling"],
        exclude_questions=[(resolve_in(run_dir, i), q) for i, q in spec.get("exclude_questions", ())],
    )


def load_run(
    run_dir: str | Path,
    *,
    knowledge_space: str | Path | None = None,
    device: str | torch.device = "auto",
    model_dir: str | Path | None = None,
) -> LoadedRun:
    """Rebuild the model of ``run_dir`` (``model_dir`` defaults to ``run_dir/model``), in eval mode.

    Args:
        run_dir: the run folder of ``python -m bamco_fast.train vqa``.
        knowledge_space: the knowledge-space (or pretraining run) folder, when it moved since training.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        model_dir: another saved model folder of the run (e.g. a merged one).
    """
    from bamco_fast.models.plain_towers import plain_towers
    from bamco_fast.models.vqa import VQAModel

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file" if run_dir.exists() else "does not exist"
        raise RunError(f"--run: expected a VQA run folder, got {str(run_dir)!r}, which {what}")
    info = read_run_info(run_dir)
    model_dir = Path(model_dir) if model_dir is not None else run_dir / MODEL_DIR
    if not (model_dir / "vqa.json").is_file():
        raise RunError(f"--run {run_dir}: no trained model in {model_dir} (the run did not finish training)")
    dev = pick_device(device)
    if info.get("plain_towers"):
        space = plain_towers(info["towers"], device=dev)
    else:
        ks_folder = (
            str(knowledge_space) if knowledge_space else resolve_in(run_dir, info.get("knowledge_space", ""))
        )
        if not ks_folder or not Path(ks_folder).is_dir():
            raise RunError(
                f"--run {run_dir}: its knowledge space {ks_folder!r} is missing (the run refers to it, it is "
                "not copied); restore that folder or pass --knowledge-space PATH"
            )
        space = load_knowledge_space(ks_folder, device=dev)
    bank = _bank(space, info["bank"], run_dir) if info.get("bank") else None
    model = VQAModel.load(model_dir, knowledge_space=space, intra_bank=bank, device=dev)
    towers = space.towers
    return LoadedRun(
        model,
        info,
        int(towers.image_size),
        tuple(towers.image_mean),
        tuple(towers.image_std),
        dev,
        run_dir,
    )
