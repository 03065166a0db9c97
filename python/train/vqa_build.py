"""Assemble the parts of a VQA run: knowledge space (or plain towers), intra-class bank, LLM, model.

Used by the training stage (:mod:`bamco_fast.train.vqa`) and by ``python -m bamco_fast.predict``, so a
saved run is rebuilt exactly as it was trained.

A run folder holds ``config.json`` (the resolved :class:`~bamco_fast.train.vqa_config.VQAConfig`),
``run.json`` (what was resolved at training time: the knowledge-space folder, the knowledge file and
image folder of the intra-class bank, the LLM folder, the evaluation image size) and ``model/`` (the
trainable weights: projectors, LoRA adapters, tokenizer; :meth:`VQAModel.save_trainable`). The frozen
towers and knowledge space are not copied: the run refers to the knowledge-space folder, which must
still exist when the run is loaded (or be given again with ``knowledge_space=``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .vqa_config import LLMS, TINY_LLM, VQAConfig

__all__ = [
    "MODEL_DIR",
    "RUN_INFO",
    "LoadedRun",
    "PlainTowers",
    "RunError",
    "answer_questions",
    "build_intra_bank",
    "knowledge_source_of_run",
    "load_knowledge_space",
    "load_run",
    "pretraining_validation_images",
    "read_run_info",
    "resolve_llm",
]

RUN_INFO = "run.json"
MODEL_DIR = "model"


class RunError(ValueError):
    """A run folder, knowledge-space folder or model cannot be used; the message says what is missing."""


class PlainTowers(nn.Module):
    """The towers alone, in the knowledge space's interface (Table 3's "no knowledge space" row).

    ``encode_text`` / ``encode_image`` are the towers' own projections, L2-normalised ``(N, D)``;
    ``patch_tokens`` as the towers'. There are no classes and no intra-class encoder, so the VQA model
    must run with ``use_intra_class=False``.
    """

    @dataclass
    class Config:
        embed_dim: int
        num_images: int = 0

    def __init__(self, towers: nn.Module):
        super().__init__()
        self.towers = towers
        self.config = PlainTowers.Config(embed_dim=int(towers.embed_dim))
        self.class_names: list[str] = []
        self.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return next(self.towers.parameters()).device

    def _device(self) -> torch.device:
        return self.device

    def encode_text(self, texts: Sequence[str] | torch.Tensor) -> torch.Tensor:
        tokens = texts if torch.is_tensor(texts) else self.towers.tokenize(list(texts))
        return nn.functional.normalize(self.towers.encode_text(tokens.to(self._device())).float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.towers.encode_image(images).float(), dim=-1)

    def patch_tokens(self, images: torch.Tensor, positional: bool = True) -> torch.Tensor:
        return self.towers.patch_tokens(images, positional=positional)

    def encode_intra_class(self, stacks: torch.Tensor) -> torch.Tensor:
        raise RuntimeError("plain towers have no intra-class encoder: set model.use_intra_class=false")


def load_knowledge_space(folder: str | Path, *, device: torch.device | str | None = None) -> nn.Module:
    """``KnowledgeSpace.load`` of a knowledge-space folder, or of the one inside a pretraining run folder."""
    from bamco_fast.models.knowledge_space import KnowledgeSpace

    path = Path(folder)
    if not path.is_dir():
        raise RunError(
            f"knowledge space: expected the folder of a pretraining run (python -m bamco_fast.train pretrain) "
            f"or of a saved knowledge space, got {str(folder)!r}, which does not exist"
        )
    candidates = [path, path / "knowledge_space", path / "best" / "knowledge_space", path / "model"]
    errors = []
    for candidate in candidates:
        if candidate.is_dir():
            try:
                return KnowledgeSpace.load(candidate, device=device)
            except (FileNotFoundError, ValueError, KeyError) as exc:
                errors.append(f"{candidate}: {exc}")
    raise RunError(
        f"knowledge space: no saved knowledge space found in {path} (looked in "
        f"{', '.join(str(c) for c in candidates)}): {'; '.join(errors) or 'none of these folders exist'}"
    )


def plain_towers(name: str, *, device: torch.device | str | None = None) -> PlainTowers:
    from bamco_fast.models.towers import load_towers

    return PlainTowers(load_towers(name, device=device))


def _question_key(image: str | Path, question: str) -> tuple[str, str]:
    """``(resolved image path, lower-cased question with runs of whitespace collapsed)``."""
    return str(Path(image).resolve()), " ".join(str(question).lower().split())


def build_intra_bank(
    knowledge_space: nn.Module,
    knowledge_file: str | Path,
    image_root: str | Path,
    *,
    image_map: str | Path | None = None,
    seed: int = 0,
    sampling: str = "question",
    exclude_questions: Collection[Sequence[str]] = (),
):
    """The intra-class bank of ``knowledge_space``'s classes: each class's training images (``(N,3,h,w)`` uint8).

    ``exclude_questions``: ``(image path, question)`` pairs whose knowledge records are left out. A VQA
    run passes its validation and evaluation questions, so the bank is built from the records of
    training questions only: a record's head entity often comes from its answer, so a pool holding an
    image through a held-out question's record would encode that answer. (An image also asked about in
    training, as most VQA-RAD test images are, stays in the bank through its training records.)
    Questions match case- and whitespace-insensitively. A class left with no image is dropped from the
    bank (it cannot be retrieved). The bank records ``bank.left_out_records`` (count),
    ``bank.left_out_images`` (images no longer in any pool), ``bank.left_out_record_images`` (the image
    of each left-out record) and ``bank.dropped_classes`` (names).
    """
    from bamco_fast.knowledge.published import read_knowledge_file
    from bamco_fast.models.retrieval import IntraClassBank
    from bamco_fast.pretraining.records import load_knowledge_table

    mapping = None
    if image_map:
        from bamco_fast.knowledge import load_image_map

        mapping = load_image_map(image_map)
    classes = list(knowledge_space.class_names)
    root = Path(image_root)
    records = read_knowledge_file(Path(knowledge_file), image_map=mapping)
    heads = {r.head_entity.lower() for r in records}
    missing = [c for c in classes if c.lower() not in heads]
    if missing:
        raise ValueError(
            f"{knowledge_file}: {len(missing)} of the knowledge space's {len(classes)} classes have no record "
            f"there (e.g. {missing[:3]}); the intra-class bank needs the knowledge file the space was trained on"
        )
    held = {_question_key(image, question) for image, question in exclude_questions}
    is_held = [_question_key(root / r.image, r.question) in held for r in records]
    kept = [r for r, h in zip(records, is_held) if not h]
    left_out = [r.image for r, h in zip(records, is_held) if h]
    if not kept:
        raise ValueError(
            f"{knowledge_file}: every record of the intra-class bank comes from a validation or evaluation question"
        )
    table = load_knowledge_table(kept, image_root, classes=classes, allow_empty_classes=True)
    pools: dict[str, list[Path]] = {}
    names: list[str] = []  # the knowledge space's spelling (the table may lower-case)
    dropped: list[str] = []
    for i, key in enumerate(table.classes):
        paths = [root / image for image in table.pool(i)]
        if paths:
            pools[key] = paths
            names.append(classes[i])
        else:
            dropped.append(classes[i])
    if not pools:
        raise ValueError(
            f"{knowledge_file}: every class's images come only from validation or evaluation questions"
        )
    towers = knowledge_space.towers
    size = int(getattr(knowledge_space.config, "intra_image_size", 84))
    bank = IntraClassBank.from_paths(
        pools, image_size=size, mean=towers.image_mean, std=towers.image_std, seed=seed, sampling=sampling
    )
    bank.class_names = names
    bank.left_out_records = len(left_out)
    bank.left_out_record_images = left_out
    bank.left_out_images = len(set(left_out) - {r.image for r in kept})
    bank.dropped_classes = dropped
    return bank


def pretraining_validation_images(folder: str | Path) -> set[str] | None:
    """The validation images of the pretraining run ``folder`` (or of its ``knowledge_space/``): the images
    whose knowledge records it held out of training. ``None`` when its config or knowledge files cannot
    be read (e.g. they moved)."""
    from .config import config_from_dict
    from .pretrain_config import PretrainConfig
    from .pretrain_data import load_tables

    folder = Path(folder)
    for candidate in (folder, folder.parent):
        path = candidate / "config.json"
        if path.is_file():
            try:
                config = config_from_dict(PretrainConfig, json.loads(path.read_text(encoding="utf-8")))
                return set(load_tables(config).val.images)
            except (ValueError, KeyError, TypeError, OSError):
                return None
    return None


def knowledge_source_of_run(folder: str | Path) -> dict[str, str] | None:
    """Training knowledge file, image folder and image map of a pretraining run (``data.train_knowledge``,
    ``data.image_root``, ``data.image_map`` of its ``config.json``).

    ``folder`` is the pretraining run folder or its ``knowledge_space/``. Relative paths are taken as the
    pretraining run recorded them (relative to the working directory). ``None`` when nothing is recorded.
    """
    folder = Path(folder)
    for candidate in (folder, folder.parent):
        path = candidate / "config.json"
        if not path.is_file():
            continue
        data = json.loads(path.read_text(encoding="utf-8")).get("data")
        if not isinstance(data, dict):
            continue
        knowledge = data.get("train_knowledge") or data.get("knowledge")
        images = data.get("image_root") or data.get("knowledge_images")
        if knowledge and images:
            image_map = data.get("image_map") or ""
            return {
                "knowledge_file": str(Path(knowledge).absolute()),
                "image_root": str(Path(images).absolute()),
                "image_map": str(Path(image_map).absolute()) if image_map else "",
            }
    return None


def resolve_llm(name: str, run_dir: Path, texts: Sequence[str], *, seed: int = 0, build: bool = True) -> str:
    """A hub name or folder for ``name``: a key of :data:`LLMS`, ``"tiny"`` (built once in ``run_dir``), or as is.

    ``build=False`` only names the tiny LLM's folder (other ranks of a distributed run, which wait for
    rank 0 to build it).
    """
    if name == TINY_LLM:
        folder = Path(run_dir) / "tiny_llm"
        if build and not (folder / "config.json").is_file():
            import transformers

            from bamco_fast.models.tiny_lm import build_tiny_causal_lm

            transformers.utils.logging.disable_progress_bar()
            build_tiny_causal_lm(folder, "llama", list(texts), seed=seed)
        return str(folder.absolute())
    return LLMS.get(name, name)


def read_run_info(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / RUN_INFO
    if not path.is_file():
        raise RunError(
            f"--run {run_dir}: not a VQA run folder (no {RUN_INFO}; expected the output folder of "
            "python -m bamco_fast.train vqa)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


@dataclass
class LoadedRun:
    """A trained run ready to answer: the model, its config, and the image preprocessing it was trained with."""

    model: nn.Module
    config: VQAConfig
    info: dict[str, Any]
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device


def load_run(
    run_dir: str | Path,
    *,
    knowledge_space: str | Path | None = None,
    device: str | torch.device = "auto",
    model_dir: str | Path | None = None,
) -> LoadedRun:
    """Rebuild the model of ``run_dir`` (``model_dir`` defaults to ``run_dir/model``)."""
    from bamco_fast.models.vqa import VQAModel

    from .config import config_from_dict

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"--run: expected a VQA run folder, got {str(run_dir)!r}, which does not exist")
    info = read_run_info(run_dir)
    config = config_from_dict(VQAConfig, json.loads((run_dir / "config.json").read_text(encoding="utf-8")))
    model_dir = Path(model_dir) if model_dir is not None else run_dir / MODEL_DIR
    if not (model_dir / "vqa.json").is_file():
        raise RunError(f"--run {run_dir}: no trained model in {model_dir} (the run did not finish training)")
    dev = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if str(device) == "auto"
        else torch.device(device)
    )
    ks_folder = knowledge_space or info.get("knowledge_space") or ""
    if info.get("plain_towers"):
        space = plain_towers(info["towers"], device=dev)
    else:
        if not ks_folder or not Path(ks_folder).is_dir():
            raise RunError(
                f"--run {run_dir}: its knowledge space {str(ks_folder)!r} is missing (the run refers to it, it is "
                "not copied); restore that folder or pass --knowledge-space PATH"
            )
        space = load_knowledge_space(ks_folder, device=dev)
    bank = None
    if info.get("bank"):
        spec = info["bank"]
        bank = build_intra_bank(
            space,
            spec["knowledge_file"],
            spec["image_root"],
            image_map=spec.get("image_map") or None,
            seed=spec["seed"],
            sampling=spec["sampling"],
            exclude_questions=spec.get("exclude_questions", ()),
        )
    model = VQAModel.load(model_dir, knowledge_space=space, intra_bank=bank, device=dev)
    towers = space.towers
    return LoadedRun(
        model, config, info, int(towers.image_size), tuple(towers.image_mean), tuple(towers.image_std), dev
    )


def answer_questions(
    run: LoadedRun,
    items: Sequence[tuple[Path, str, str]],
    *,
    batch_size: int = 32,
    max_new_tokens: int | None = None,
    progress: bool = False,
) -> list:
    """Answers (:class:`~bamco_fast.models.vqa.GeneratedAnswer`) for ``(image path, question, qid)`` items.

    Every image is decoded (and checked) before any generation, so a bad file fails fast.
    """
    from .vqa_data import ImageTable

    table = ImageTable([p for p, _, _ in items], run.image_size, run.mean, run.std, progress=progress)
    steps = max_new_tokens or run.config.eval.max_new_tokens
    out = []
    from tqdm.auto import tqdm

    bar = tqdm(total=len(items), desc="answering", unit="q", disable=not progress, leave=False)
    for start in range(0, len(items), batch_size):
        chunk = items[start : start + batch_size]
        images = table.normalized(table.rows([p for p, _, _ in chunk])).to(run.device)
        out.extend(
            run.model.generate(
                images, [q for _, q, _ in chunk], qids=[k for _, _, k in chunk], max_new_tokens=steps
            )
        )
        bar.update(len(chunk))
    bar.close()
    return out
