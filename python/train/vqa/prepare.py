"""Assemble a VQA run before any training: splits, knowledge space (or plain towers), bank, LLM, model.

:func:`prepare` checks every split completely (the readers' entry checks, leakage, empty splits) before
anything is trained, and builds the model; ``run.json`` then records what was resolved (the knowledge
space, the bank's sources and held-out questions, the LLM), so ``--eval-only``, ``predict`` and the
library's :func:`bamco_fast.inference.load_run` rebuild the same model.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from bamco_fast.boundary import UsageError

from .config import VQAConfig
from .sources import knowledge_source_of_run, records_seen_in_pretraining, resolve_llm

__all__ = ["DEMO_KNOWLEDGE_SPACE", "Prepared", "knowledge_space_folder", "load_splits", "prepare"]

DEMO_KNOWLEDGE_SPACE = "runs/pretrain-demo"  # the pretraining demo preset's folder


@dataclasses.dataclass
class Prepared:
    """Everything a run needs, built before any training: splits, model, image table, run info."""

    config: VQAConfig
    splits: Any
    model: Any
    table: Any
    info: dict
    runtime: Any


def _limit(records, n: int) -> list:
    return list(records) if n <= 0 else list(records)[:n]


def load_splits(config: VQAConfig):
    """The run's splits, checked completely (entries, leakage, empty splits) before any training."""
    from bamco_fast.data.vqa_splits import check_leakage, drop_leaked, load_vqa_splits

    d = config.data
    dataset, root = d.dataset, d.root
    if dataset == "demo":
        from bamco_fast.demo_data import demo_paths

        dataset, root = "vqa-rad", str(demo_paths().vqa_root)
    if not root:
        raise UsageError(f"data.root: expected the {d.dataset} dataset folder, got an empty string")
    splits = load_vqa_splits(
        dataset,
        root,
        eval_split=d.eval_split,
        layout=d.layout,
        lang=None if d.lang == "all" else d.lang,
        val_fraction=d.val_fraction,
        test_fraction=d.test_fraction,
        seed=d.split_seed,
    )
    if d.drop_leaked:
        splits, _ = drop_leaked(splits)
    splits.notes.extend(check_leakage(splits))
    splits.train = _limit(splits.train, d.max_train)
    splits.validate = _limit(splits.validate, d.max_validate)
    splits.evaluate = _limit(splits.evaluate, d.max_evaluate)
    if not splits.train or not splits.validate or not splits.evaluate:
        raise UsageError(
            f"data: expected non-empty train, validate and evaluate splits, got {splits.summary()}"
        )
    return splits


def knowledge_space_folder(config: VQAConfig) -> str:
    """The pretraining run the model reads (``model.knowledge_space``; the demo's by default)."""
    folder = config.model.knowledge_space
    return folder or (DEMO_KNOWLEDGE_SPACE if config.data.dataset == "demo" else "")


def _bank_source(config: VQAConfig, ks_folder: Path) -> dict:
    """Knowledge file, image folder and image map of the intra-class bank (config, else the pretraining run)."""
    d = config.data
    if d.knowledge:
        if not d.knowledge_images:
            raise UsageError(
                "data.knowledge_images: expected the folder the knowledge file's images are relative to"
            )
        return {
            "knowledge_file": d.knowledge,
            "image_root": d.knowledge_images,
            "image_map": d.knowledge_image_map,
        }
    source = knowledge_source_of_run(ks_folder)
    if source is None and d.dataset == "demo":
        from bamco_fast.demo_data import demo_paths

        paths = demo_paths()
        source = {
            "knowledge_file": str(paths.knowledge["train"]),
            "image_root": str(paths.images),
            "image_map": "",
        }
    if source is None:
        raise UsageError(
            f"data.knowledge: the pretraining run {ks_folder} does not say which knowledge file it used; set "
            "data.knowledge=FILE and data.knowledge_images=FOLDER (the training knowledge records of the bank)"
        )
    return source


def _space(config: VQAConfig, splits, info: dict, device):
    """The knowledge space, or the plain towers (Table 3's "no knowledge space")."""
    from bamco_fast.inference import load_knowledge_space
    from bamco_fast.models.plain_towers import plain_towers

    m, ks_folder = config.model, knowledge_space_folder(config)
    if m.plain_towers:
        name = m.towers or (load_knowledge_space(ks_folder).towers.name if ks_folder else "")
        if not name:
            from bamco_fast.models.towers import BIOMEDCLIP

            name = BIOMEDCLIP
        info.update(plain_towers=True, towers=name, knowledge_space="")
        splits.notes.append(
            f"plain-towers configuration: no knowledge space (towers {name}), no intra-class branch"
        )
        return plain_towers(name, device=device)
    space = load_knowledge_space(ks_folder, device=device)
    info.update(plain_towers=False, knowledge_space=str(Path(ks_folder).absolute()))
    splits.notes.append(f"knowledge space: {ks_folder} ({space.num_classes} classes)")
    return space


def _bank(config: VQAConfig, space, splits, info: dict):
    """The intra-class bank from the knowledge records of training questions only."""
    from bamco_fast.models.intra_bank import build_intra_bank

    ks_folder = Path(knowledge_space_folder(config))
    source = _bank_source(config, ks_folder)
    held_out = sorted(
        {(str(Path(r.image_path).resolve()), r.question) for r in [*splits.validate, *splits.evaluate]}
    )
    seed, sampling = config.loop.seed, config.model.intra_sampling
    bank = build_intra_bank(space, **source, seed=seed, sampling=sampling, exclude_questions=held_out)
    seen = records_seen_in_pretraining(bank, ks_folder)
    info["bank"] = {
        **{k: str(Path(v).absolute()) if v else "" for k, v in source.items()},
        "seed": seed,
        "sampling": sampling,
        "exclude_questions": [list(pair) for pair in held_out],
        "records_seen_in_pretraining": seen,
    }
    if seen:
        splits.notes.append(
            f"warning: the knowledge space was trained on {seen} knowledge records of this run's validation/"
            "evaluation questions (its pretraining held out other images), so it may flatter the validation "
            "loss; pretrain with data.vqa_root=<this dataset's folder> (the presets do) so both stages hold "
            "out the same validation images"
        )
    dropped = len(bank.dropped_classes)
    splits.notes.append(
        f"intra-class bank: {len(bank.class_names)} classes from the records of training questions; "
        f"{bank.left_out_records} records of validation/evaluation questions left out ({bank.left_out_images} "
        "images no longer in any pool"
        + (f", {dropped} classes left without images are not retrievable)" if dropped else ")")
    )
    return bank


def _entities(config: VQAConfig, space, splits, info: dict):
    """Entity names for ``model.knowledge_input=entities``: the knowledge space's classes; with plain
    towers, the head entities of ``data.knowledge``."""
    from bamco_fast.models.entity_input import EntityTexts

    if not config.model.plain_towers:
        entities = EntityTexts(space.class_names)
    elif not config.data.knowledge:
        raise UsageError(
            "data.knowledge: model.knowledge_input=entities with plain towers needs a knowledge file whose head "
            "entities are the vocabulary, got an empty string (or use model.knowledge_input=question)"
        )
    else:
        entities = EntityTexts.from_knowledge_file(config.data.knowledge)
    coverage = entities.coverage([r.question for r in splits.train])
    info["entities"] = {"names": len(entities), "train_coverage": round(coverage, 4)}
    splits.notes.append(
        f"knowledge input: entities ({len(entities)} knowledge-base names); at least one found in {coverage:.1%} "
        "of the training questions, the others use the question text"
    )
    return entities


def prepare(config: VQAConfig, runtime) -> Prepared:
    """Splits, knowledge space, bank, LLM and the model (seeded), and the image table of every split."""
    from bamco_fast.data.images import ImageTable
    from bamco_fast.models.vqa import build_vqa_model

    m = config.model
    splits = load_splits(config)
    info: dict = {"splits": splits.summary()}
    space = _space(config, splits, info, runtime.device)
    use_intra = m.use_intra_class and not m.plain_towers
    bank = _bank(config, space, splits, info) if use_intra else None
    entities = (
        _entities(config, space, splits, info)
        if m.use_knowledge and m.knowledge_input == "entities"
        else None
    )
    texts = [f"{r.question} {r.answer}" for r in splits.train]
    llm = resolve_llm(m.llm, Path(config.out), texts, seed=config.loop.seed, build=runtime.is_main)
    if runtime.distributed:
        torch.distributed.barrier()  # rank 0 builds a tiny LLM into the run folder; the others then read it
    model_config = dataclasses.replace(
        m, llm=llm, knowledge_space=info["knowledge_space"], use_intra_class=use_intra
    )
    torch.manual_seed(config.loop.seed)
    model = build_vqa_model(model_config, space, bank, entities=entities, device=runtime.device)
    info["llm"] = llm
    towers = space.towers
    records = [*splits.train, *splits.validate, *splits.evaluate]
    table = ImageTable(
        [r.image_path for r in records],
        int(towers.image_size),
        towers.image_mean,
        towers.image_std,
        progress=config.loop.progress,
    )
    return Prepared(config, splits, model, table, info, runtime)
