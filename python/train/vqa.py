"""Knowledge-driven VQA fine-tuning and evaluation: ``python -m bamco_fast.train vqa``.

Trains the projectors and LoRA adapters of :class:`bamco_fast.models.vqa.VQAModel` on the train split
with the answer-only loss, selects the checkpoint with the lowest validation loss (validation only,
never test), then answers the evaluation split once with batched greedy generation and scores it under
every protocol (:func:`bamco_fast.metrics.score`), beside the no-model baselines.

With no arguments it runs the packaged demo: the VQA-RAD subset shipped with the package, a tiny Llama
built in the run folder and the knowledge space of the demo pretraining run (``runs/pretrain-demo``).

Writes into ``out``: ``config.json``/``.yaml``, ``run.json`` (splits, knowledge-space reference, bank),
``checkpoints/`` (resumable), ``metrics.jsonl``, ``curves.png``, ``model/`` (trainable weights of the
selected checkpoint), ``predictions_<split>.jsonl`` and ``report_<split>.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from .config import ConfigError, config_to_dict, resolve_config, save_resolved
from .vqa_config import VQAConfig, preset, preset_names

__all__ = ["VQATask", "add_arguments", "main", "prepare", "run", "run_config"]

DEMO_KNOWLEDGE_SPACE = "runs/pretrain-demo"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--preset",
        default="demo-tiny",
        help=f"starting configuration (default demo-tiny); one of {', '.join(preset_names())}",
    )
    parser.add_argument("--config", type=Path, default=None, help="YAML/JSON file applied over the preset")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. loop.epochs=3"
    )
    parser.add_argument(
        "--resume", type=Path, default=None, help="checkpoint file or run folder to continue from"
    )
    parser.add_argument(
        "--knowledge-space",
        type=Path,
        default=None,
        metavar="RUN_DIR",
        help="pretraining run (its knowledge space)",
    )
    parser.add_argument(
        "--eval-only", action="store_true", help="only evaluate the trained model of the run folder `out`"
    )


# ---------------------------------------------------------------------------------------------------
# the task the shared loop trains


class VQATask:
    """The VQA stage as a :class:`bamco_fast.train.loop.Task`: answer-only loss, validation loss for selection.

    Batches are global batches of ``batch_size`` records in a seeded per-epoch order
    (:func:`~bamco_fast.train.vqa_data.iter_batches`, last partial batch dropped); each rank takes its
    contiguous share. Validation loss = answer-token-weighted mean over the validation split.
    """

    selection_metric = "val_loss"
    selection_mode = "min"

    def __init__(
        self,
        model,
        train,
        validate,
        table,
        *,
        batch_size,
        eval_batch_size,
        seed,
        runtime,
        cache=False,
        progress=False,
    ):
        self.model = model
        self.train_records = list(train)
        self.val_records = list(validate)
        self.table = table
        self.global_batch = int(batch_size)
        self.local_batch = runtime.local_batch(self.global_batch)
        self.eval_batch_size = int(eval_batch_size)
        self.seed = int(seed)
        self.runtime = runtime
        self.train_frozen = self.val_frozen = None
        if cache:
            self.train_frozen = self._frozen(self.train_records, progress)
            self.val_frozen = self._frozen(self.val_records, progress)

    def _frozen(self, records, progress: bool):
        """Frozen features of ``records`` (every rank computes them all; they live on the device)."""
        from bamco_fast.models.vqa_features import frozen_feature_table

        table = self.table
        return frozen_feature_table(
            self.model,
            [str(r.image_path) for r in records],
            lambda keys: table.normalized(table.rows(keys)),
            [r.question for r in records],
            [r.qid for r in records],
            batch_size=self.eval_batch_size,
            progress=progress,
        )

    def steps_per_epoch(self) -> int:
        return len(self.train_records) // self.global_batch

    def train_batches(self, epoch: int, start: int):
        from .vqa_data import iter_batches

        rank, local = self.runtime.rank, self.local_batch
        for batch in iter_batches(
            self.train_records,
            self.table,
            self.global_batch,
            shuffle=True,
            seed=self.seed,
            epoch=epoch,
            start=start,
            drop_last=True,
            frozen=self.train_frozen,
        ):
            yield batch.part(slice(rank * local, (rank + 1) * local)).to(self.runtime.device)

    def step_loss(self, model, batch) -> dict[str, torch.Tensor]:
        out = model(batch.images, batch.questions, batch.answers, qids=batch.qids, frozen=batch.frozen)
        return {"loss": out["loss"]}

    def batch_size(self, batch) -> int:
        return len(batch)

    def evaluate(self) -> dict[str, float]:
        from .vqa_data import iter_batches

        total, tokens = 0.0, 0
        for batch in iter_batches(self.val_records, self.table, self.eval_batch_size, frozen=self.val_frozen):
            batch = batch.to(self.runtime.device)
            out = self.model(
                batch.images, batch.questions, batch.answers, qids=batch.qids, frozen=batch.frozen
            )
            n = int(out["answer_tokens"])
            total += float(out["loss"]) * n
            tokens += n
        return {"val_loss": total / max(tokens, 1)}


# ---------------------------------------------------------------------------------------------------
# assembling a run


@dataclasses.dataclass
class Prepared:
    """Everything a run needs, built before any training: splits, model, image table, run info."""

    config: VQAConfig
    splits: object
    model: object
    table: object
    info: dict
    runtime: object


def _limit(records, n: int):
    return list(records) if n <= 0 else list(records)[:n]


def _load_splits(config: VQAConfig):
    from .vqa_splits import check_leakage, drop_leaked, load_vqa_splits

    d = config.data
    dataset, root = d.dataset, d.root
    if dataset == "demo":
        from bamco_fast.demo_data import demo_paths

        dataset, root = "vqa-rad", str(demo_paths().vqa_root)
    if not root:
        raise ConfigError(f"data.root: expected the {d.dataset} dataset folder, got an empty string")
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
    lines = check_leakage(splits)
    splits.notes.extend(lines)
    splits.train = _limit(splits.train, d.max_train)
    splits.validate = _limit(splits.validate, d.max_validate)
    splits.evaluate = _limit(splits.evaluate, d.max_evaluate)
    if not splits.train or not splits.validate or not splits.evaluate:
        raise ConfigError(f"data: a split is empty ({splits.summary()})")
    return splits


def _knowledge_source(config: VQAConfig, ks_folder: Path) -> dict | None:
    """Knowledge file, image folder and image map of the intra-class bank (config, else the pretraining run)."""
    d = config.data
    if d.knowledge:
        if not d.knowledge_images:
            raise ConfigError(
                "data.knowledge_images: expected the folder the knowledge file's images are relative to"
            )
        return {
            "knowledge_file": d.knowledge,
            "image_root": d.knowledge_images,
            "image_map": d.knowledge_image_map,
        }
    from .vqa_build import knowledge_source_of_run

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
        raise ConfigError(
            f"data.knowledge: the pretraining run {ks_folder} does not say which knowledge file it used; set "
            "data.knowledge=FILE and data.knowledge_images=FOLDER (the training knowledge records of the bank)"
        )
    return source


def _records_seen_in_pretraining(bank, ks_folder) -> int | None:
    """Records of this run's held-out questions whose image the knowledge space's pretraining trained on."""
    if not bank.left_out_record_images:
        return 0
    from .vqa_build import pretraining_validation_images

    held = pretraining_validation_images(ks_folder)
    if held is None:
        return None
    return sum(1 for image in bank.left_out_record_images if image not in held)


def _entity_vocabulary(config: VQAConfig, space, plain: bool):
    """Entity names for ``model.knowledge_input=entities``: the knowledge space's classes (the head
    entities it was trained on); with plain towers, the head entities of ``data.knowledge``."""
    from bamco_fast.models.entity_input import EntityTexts

    if not plain:
        return EntityTexts(space.class_names)
    if not config.data.knowledge:
        raise ConfigError(
            "data.knowledge: model.knowledge_input=entities with plain towers needs a knowledge file whose head "
            "entities are the vocabulary, got an empty string (or use model.knowledge_input=question)"
        )
    try:
        return EntityTexts.from_knowledge_file(config.data.knowledge)
    except ValueError as exc:
        raise ConfigError(f"data.knowledge: {exc}") from None


def prepare(config: VQAConfig) -> Prepared:
    """Check the inputs and build the model (fails early and clearly on bad input)."""
    from bamco_fast.data.images import ImageTable
    from bamco_fast.inference import load_knowledge_space
    from bamco_fast.models.intra_bank import build_intra_bank
    from bamco_fast.models.plain_towers import plain_towers
    from bamco_fast.models.vqa import VQAModelConfig, build_vqa_model

    from .runtime import init_runtime
    from .vqa_build import resolve_llm

    runtime = init_runtime(config.loop.device)
    if config.loop.num_threads and runtime.device.type == "cpu":
        torch.set_num_threads(config.loop.num_threads)
    m = config.model
    out = Path(config.out)
    splits = _load_splits(config)
    ks_folder = config.knowledge_space or (DEMO_KNOWLEDGE_SPACE if config.data.dataset == "demo" else "")
    info: dict = {"splits": splits.summary()}
    use_intra = m.use_intra_class and not m.plain_towers
    if m.plain_towers:
        towers_name = m.towers
        if not towers_name and ks_folder:
            towers_name = load_knowledge_space(ks_folder).towers.name
        if not towers_name:
            from bamco_fast.models.towers import BIOMEDCLIP

            towers_name = BIOMEDCLIP
        space = plain_towers(towers_name, device=runtime.device)
        info.update(plain_towers=True, towers=towers_name, knowledge_space="")
        splits.notes.append(
            f"plain-towers configuration: no knowledge space (towers {towers_name}), no intra-class branch"
        )
    else:
        if not ks_folder:
            raise ConfigError(
                "knowledge_space: expected the pretraining run folder (--knowledge-space RUN_DIR), got nothing; "
                "or set model.plain_towers=true for the towers-only configuration"
            )
        if config.data.dataset == "demo" and not Path(ks_folder).is_dir():
            raise ConfigError(
                f"knowledge_space: the demo needs the demo pretraining run {ks_folder!r}, which does not exist; "
                "run `python -m bamco_fast.train pretrain` first (or pass --knowledge-space RUN_DIR)"
            )
        space = load_knowledge_space(ks_folder, device=runtime.device)
        info.update(plain_towers=False, knowledge_space=str(Path(ks_folder).absolute()))
        splits.notes.append(f"knowledge space: {ks_folder} ({space.num_classes} classes)")
    bank = None
    if use_intra:
        source = _knowledge_source(config, Path(ks_folder))
        held_out = sorted(
            {(str(Path(r.image_path).resolve()), r.question) for r in [*splits.validate, *splits.evaluate]}
        )
        bank = build_intra_bank(
            space, **source, seed=config.loop.seed, sampling=m.intra_sampling, exclude_questions=held_out
        )
        info["bank"] = {
            **{k: str(Path(v).absolute()) if v else "" for k, v in source.items()},
            "seed": config.loop.seed,
            "sampling": m.intra_sampling,
            "exclude_questions": [list(pair) for pair in held_out],
        }
        trained_on = _records_seen_in_pretraining(bank, ks_folder)
        if trained_on:
            splits.notes.append(
                f"warning: the knowledge space was trained on {trained_on} knowledge records of this run's "
                "validation/evaluation questions (its pretraining held out other images), so it may flatter "
                "the validation loss; pretrain with data.vqa_root=<this dataset's folder> (the presets do) so "
                "both stages hold out the same validation images"
            )
        info["bank"]["records_seen_in_pretraining"] = trained_on
        dropped = len(bank.dropped_classes)
        splits.notes.append(
            f"intra-class bank: {len(bank.class_names)} classes from the records of training questions; "
            f"{bank.left_out_records} records of validation/evaluation questions left out "
            f"({bank.left_out_images} images no longer in any pool"
            + (f", {dropped} classes left without images are not retrievable)" if dropped else ")")
        )
    entities = None
    if m.use_knowledge and m.knowledge_input == "entities":
        entities = _entity_vocabulary(config, space, m.plain_towers)
        coverage = entities.coverage([r.question for r in splits.train])
        info["entities"] = {"names": len(entities), "train_coverage": round(coverage, 4)}
        splits.notes.append(
            f"knowledge input: entities ({len(entities)} knowledge-base names); at least one found in "
            f"{coverage:.1%} of the training questions, the others use the question text"
        )
    texts = [f"{r.question} {r.answer}" for r in splits.train]
    llm_name = resolve_llm(m.llm, out, texts, seed=config.loop.seed, build=runtime.is_main)
    if runtime.distributed:
        torch.distributed.barrier()  # rank 0 builds a tiny LLM into the run folder; the others then read it
    model_config = VQAModelConfig(
        llm=llm_name,
        knowledge_space=info["knowledge_space"],
        lora=m.lora,
        lora_r=m.lora_r,
        lora_alpha=m.lora_alpha,
        use_image=m.use_image,
        use_knowledge=m.use_knowledge,
        use_intra_class=use_intra,
        patch_positional=m.patch_positional,
        knowledge_input=m.knowledge_input,
        num_intra_images=m.num_intra_images,
        max_length=m.max_length,
        max_new_tokens=config.eval.max_new_tokens,
    )
    torch.manual_seed(config.loop.seed)
    model = build_vqa_model(model_config, space, bank, entities=entities, device=runtime.device)
    info["llm"] = llm_name
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


# ---------------------------------------------------------------------------------------------------
# the stage


def _evaluate(prep: Prepared, model, out: Path) -> int:
    from .loop import _autocast
    from .vqa_eval import predict_records, write_evaluation

    config, splits = prep.config, prep.splits
    start = time.perf_counter()
    with _autocast(config.loop, prep.runtime.device):
        rows = predict_records(
            model,
            splits.evaluate,
            prep.table,
            batch_size=config.eval.batch_size,
            max_new_tokens=config.eval.max_new_tokens,
            device=prep.runtime.device,
            progress=config.loop.progress,
            desc=f"answering {splits.eval_split}",
        )
    seconds = time.perf_counter() - start
    pred_path, report_path, table = write_evaluation(
        out,
        splits.eval_split,
        rows,
        eval_records=splits.evaluate,
        train_records=splits.train,
        closed_rule=config.eval.closed_rule,
        n_boot=config.eval.n_boot,
        seed=config.loop.seed,
        bertscore_model=config.eval.bertscore_model or None,
        info={
            "run": str(out),
            "dataset": splits.dataset,
            "split": splits.eval_split,
            "generation_seconds": round(seconds, 3),
        },
    )
    print(f"== {splits.dataset} {splits.eval_split}: {len(rows)} questions answered in {seconds:.1f} s ==")
    print(table)
    print(f"predictions: {pred_path}\nreport: {report_path}")
    from bamco_fast.evaluate.html_report import write_report_html

    print(f"answers page: {write_report_html(out, splits.eval_split, model=model)}")
    return 0


def run_config(config: VQAConfig, *, resume: Path | None = None, eval_only: bool = False) -> int:
    """Train (unless ``eval_only``), select on validation, save ``model/``, evaluate once."""
    from bamco_fast.inference import MODEL_DIR, RUN_INFO, load_run

    from .loop import load_trainable_state, train

    out = Path(config.out)
    if eval_only:
        from bamco_fast.data.images import ImageTable

        from .runtime import init_runtime

        runtime = init_runtime(config.loop.device)
        splits = _load_splits(config)
        loaded = load_run(out, device=runtime.device, knowledge_space=config.knowledge_space or None)
        table = ImageTable(
            [r.image_path for r in splits.evaluate], loaded.image_size, loaded.mean, loaded.std
        )
        prep = Prepared(config, splits, loaded.model, table, loaded.info, runtime)
        return _evaluate(prep, loaded.model, out)
    optim = config.optim
    prep = prepare(config)
    for note in prep.splits.notes:
        print(note)
    steps = (len(prep.splits.train) // config.loop.batch_size) * config.loop.epochs
    if config.warmup_ratio > 0:
        optim = dataclasses.replace(optim, warmup_steps=round(config.warmup_ratio * steps))
    runtime = prep.runtime
    from bamco_fast.data.jsonio import atomic_write_text

    if runtime.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_resolved(config, out)
        atomic_write_text(out / RUN_INFO, json.dumps(prep.info, indent=1) + "\n")
    task = VQATask(
        prep.model,
        prep.splits.train,
        prep.splits.validate,
        prep.table,
        batch_size=config.loop.batch_size,
        eval_batch_size=config.eval.batch_size,
        seed=config.loop.seed,
        runtime=runtime,
        cache=config.data.cache_frozen_features,
        progress=config.loop.progress,
    )
    if task.train_frozen is not None and runtime.is_main:
        print(
            f"frozen features of {len(task.train_records)} training and {len(task.val_records)} validation "
            f"questions computed once ({(task.train_frozen.nbytes + task.val_frozen.nbytes) / 2**20:.1f} MiB)"
        )
    if resume is None and runtime.is_main:
        prep.model.eval()
        with torch.no_grad():
            before = task.evaluate()["val_loss"]
        prep.model.train()
        prep.info["val_loss_before_training"] = before
        atomic_write_text(out / RUN_INFO, json.dumps(prep.info, indent=1) + "\n")
        print(f"validation loss before training: {before:.4f}")
    result = train(
        task, config.loop, optim, out, config_dict=config_to_dict(config), runtime=runtime, resume=resume
    )
    if result.interrupted or result.stopped_early:
        return 130 if result.interrupted else 0
    if not runtime.is_main:
        return 0
    best = result.best_checkpoint
    if best is not None:
        state = torch.load(best, map_location="cpu", weights_only=False)
        load_trainable_state(prep.model, state["model"], str(best))
        print(f"selected step {result.best_step} (val_loss {result.best_value:.4f}) from {best}")
    prep.model.save_trainable(out / MODEL_DIR)
    return _evaluate(prep, prep.model, out)


def _fresh_out(config: VQAConfig, explicit: bool) -> VQAConfig:
    """Never train over a finished or running run: an explicit ``out`` is an error, a default one gets a sibling."""
    out = Path(config.out)
    if not (out / "checkpoints").is_dir() or not any((out / "checkpoints").iterdir()):
        return config
    if explicit:
        raise ConfigError(
            f"out: {out} already holds a run (checkpoints/); continue it with --resume {out}, "
            "evaluate it with --eval-only, or choose another out"
        )
    n = 2
    while (Path(f"{config.out}-{n}") / "checkpoints").is_dir():
        n += 1
    return dataclasses.replace(config, out=f"{config.out}-{n}")


def run(args: argparse.Namespace) -> int:
    try:
        config = resolve_config(preset(args.preset), args.config, args.set)
        if args.eval_only and (Path(config.out) / "config.json").is_file():
            # Evaluate the run as it was trained; --config / --set still apply on top (e.g. eval.*).
            from .config import config_from_dict

            saved = json.loads((Path(config.out) / "config.json").read_text(encoding="utf-8"))
            config = resolve_config(config_from_dict(VQAConfig, saved), args.config, args.set)
        if args.knowledge_space is not None:
            config = dataclasses.replace(config, knowledge_space=str(args.knowledge_space))
        if args.resume is None and not args.eval_only:
            explicit = any(item.split("=", 1)[0].strip() == "out" for item in args.set)
            config = _fresh_out(config, explicit)
        return run_config(config, resume=args.resume, eval_only=args.eval_only)
    except (ConfigError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    """``python -m bamco_fast.train vqa ARGS`` without the command word (see :func:`add_arguments`)."""
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.train vqa", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))
