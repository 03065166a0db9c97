"""Knowledge-space pretraining: ``python -m bamco_fast.train pretrain [--preset P] [--config F] [--set k=v]``.

With no arguments it runs the embedded demo (packaged VQA-RAD subset, tiny towers built locally into the
run folder and loaded through ``local-dir:``). A run folder holds ``config.json``/``config.yaml``,
``towers/`` (tiny towers only), ``checkpoints/`` (rolling, ``best.pt`` on validation matching),
``metrics.jsonl``, ``curves.png``, ``knowledge_space/`` (the selected model, loadable with
``KnowledgeSpace.load``) and ``matching.json``/``matching.txt`` (the matching table: untrained towers,
optionally the alignment baseline, BaMCo). ``--eval-only RUN`` recomputes the table of a finished run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .checkpoint import CheckpointError, atomic_write_bytes, load_checkpoint
from .config import ConfigError, config_from_dict, config_to_dict, resolve_config, save_resolved
from .pretrain_config import PRESETS, PretrainConfig, preset

__all__ = ["PretrainTask", "add_arguments", "alignment_loss", "main", "prepare", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``pretrain`` sub-command."""
    parser.add_argument(
        "--preset", choices=sorted(PRESETS), default="demo", help="base configuration (default demo)"
    )
    parser.add_argument(
        "--config", type=Path, default=None, help="YAML/JSON file applied on top of the preset"
    )
    parser.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override, e.g. loop.epochs=3",
    )
    parser.add_argument("--out", type=str, default=None, help="run folder (default: the preset's)")
    parser.add_argument(
        "--resume", type=Path, default=None, help="continue a run: its folder or a checkpoint file"
    )
    parser.add_argument(
        "--eval-only", type=Path, default=None, metavar="RUN", help="matching table of a finished run"
    )
    parser.add_argument(
        "--alignment",
        action="store_true",
        help="also train the plain-CLIP 'alignment' baseline for the table",
    )


# --------------------------------------------------------------------------------------------------
# losses and the task


def alignment_loss(modalities: list[torch.Tensor], temperature: float, gather: bool) -> torch.Tensor:
    """Plain CLIP baseline: mean over modality pairs (a, b) of the symmetric InfoNCE loss.

    ``L(a, b) = 0.5 * [CE(a b^T / T, arange) + CE(b a^T / T, arange)]`` over the (all-gathered) batch, with
    L2-normalised (B, D) inputs; no labels, so same-class samples are negatives.
    """
    from bamco_fast.distributed import gather_with_grad

    feats = [gather_with_grad(m, f"modality {i}") if gather else m for i, m in enumerate(modalities)]
    target = torch.arange(feats[0].shape[0], device=feats[0].device)
    losses = []
    for i in range(len(feats)):
        for j in range(i + 1, len(feats)):
            logits = feats[i].float() @ feats[j].float().T / temperature
            losses.append(0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)))
    return torch.stack(losses).mean()


class PretrainTask:
    """The pretraining stage as a :class:`bamco_fast.train.loop.Task`.

    Frozen text features of the training strings (``text_features`` (T, E)) are looked up by
    ``batch.text_index`` (when the text tower trains, ``model.config.freeze_text_tower`` false, its tokens
    ``text_tokens`` (T, L) are looked up instead and encoded every step); frozen image features
    (``image_features`` (M, E)) by ``batch.image_index`` when cached, else the reference images go through
    the frozen image tower every step.
    """

    selection_mode = "max"

    def __init__(
        self,
        model,
        batches,
        objective,
        *,
        config: PretrainConfig,
        text_features,
        image_features,
        evaluator,
        text_tokens=None,
    ):
        self.model = model
        self.text_tokens = text_tokens
        self.batches = batches
        self.objective = objective
        self.config = config
        self.text_features = text_features
        self.image_features = image_features
        self.evaluator = evaluator
        self.selection_metric = f"match/{config.eval.selection_metric}"
        self.find_unused_parameters = config.objective.loss == "alignment"
        self.plot_keys = [
            "match/image->entity/top1",
            "match/image->relation/top1",
            "match/relation->entity/top1",
            "match/entity->definition/top1",
            "match/mean",
        ]
        self.plot_title = f"pretrain {config.data.dataset} ({config.objective.loss})"
        self.loss_backend: str | None = None  # the contrastive loss's backend, known after the first step

    def steps_per_epoch(self) -> int:
        return len(self.batches)

    def train_batches(self, epoch: int, start: int):
        for index in range(start, len(self.batches)):
            yield self.batches.batch(epoch, index)

    def batch_size(self, batch) -> int:
        return len(batch)

    def step_loss(self, model, batch) -> dict[str, torch.Tensor]:
        kwargs: dict[str, Any] = {"intra_stacks": batch.intra_stacks}
        if self.text_tokens is not None:
            kwargs["text_tokens"] = self.text_tokens[batch.text_index]
        else:
            kwargs["text_features"] = self.text_features[batch.text_index]
        if self.image_features is not None:
            kwargs["image_features"] = self.image_features[batch.image_index]
        else:
            kwargs["images"] = batch.images
        out = model(**kwargs)
        if self.config.objective.loss == "alignment":
            dtype = out.intra.dtype
            loss = alignment_loss(
                [out.image.to(dtype), out.text.to(dtype), out.intra],
                self.config.model.temperature,
                gather=torch.distributed.is_available() and torch.distributed.is_initialized(),
            )
            return {"loss": loss, "alignment_loss": loss.detach()}
        from bamco_fast.models.knowledge_space import KnowledgeSpace

        if self.loss_backend is None:
            self._report_backend(out.intra)
        return KnowledgeSpace.loss(out, batch.labels, self.objective)

    def _report_backend(self, features: torch.Tensor) -> None:
        """Say once which backend runs the contrastive loss on these features (device and dtype)."""
        from bamco_fast.ops.bamco_loss import select_backend

        self.loss_backend = select_backend(features, self.objective.contrastive.backend).name
        dist = torch.distributed
        if not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0:
            from tqdm.auto import tqdm

            dtype = str(features.dtype).replace("torch.", "")
            # above the progress bar, which is running
            tqdm.write(f"contrastive loss backend: {self.loss_backend} ({features.device.type}, {dtype})")

    def evaluate(self) -> dict[str, float]:
        return {f"match/{k}": v for k, v in self.evaluator(self.model).items()}


# --------------------------------------------------------------------------------------------------
# building a run


@dataclasses.dataclass
class Prepared:
    """Everything built before training (shared by training and ``--eval-only``)."""

    config: PretrainConfig
    run_dir: Path
    runtime: Any
    tables: Any
    model: Any
    sampler: Any
    train_cache: Any
    val_cache: Any
    text_features: torch.Tensor
    val_text_features: torch.Tensor
    image_features: torch.Tensor | None
    val_image_features: torch.Tensor


def _tiny_towers(
    config: PretrainConfig, run_dir: Path, texts: tuple[str, ...], is_main: bool
) -> PretrainConfig:
    """Build the tiny towers once into ``run_dir/towers`` (rank 0) and point ``model.tower`` at them."""
    from bamco_fast.models.tiny import build_tiny_towers

    folder = (run_dir / "towers").absolute()
    tiny = config.tiny
    if is_main and not (folder / "open_clip_config.json").is_file():
        build_tiny_towers(
            folder,
            list(texts),
            image_size=tiny.image_size,
            seed=tiny.seed,
            embed_dim=tiny.embed_dim,
            context_length=tiny.context_length,
            vocab_size=tiny.vocab_size,
            text_width=tiny.text_width,
            text_layers=tiny.text_layers,
        )
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()
    model = dataclasses.replace(config.model, tower=f"local-dir:{folder}", embed_dim=tiny.embed_dim)
    return dataclasses.replace(config, model=model)


def prepare(config: PretrainConfig, runtime, *, log=print) -> Prepared:
    """Tables, caches, the model (seeded) and the frozen-feature caches of a run."""
    from bamco_fast.models.knowledge_space import KnowledgeSpace
    from bamco_fast.models.towers import load_towers

    from . import pretrain_data as pdata

    run_dir = Path(config.out)
    t0 = time.perf_counter()
    tables = pdata.load_tables(config)
    log(
        f"data: {len(tables.train)} training records, {tables.train.num_classes} classes, "
        f"{len(tables.train.images)} images, {len(tables.train.strings)} distinct strings; validation "
        f"{len(tables.val)} records of {len(tables.val.images)} images ({tables.val_source})"
    )
    if config.tiny.enabled:
        config = _tiny_towers(config, run_dir, tables.train.strings, runtime.is_main)
    towers = load_towers(config.model.tower, device=runtime.device)
    torch.manual_seed(config.loop.seed)  # the same initial heads on every rank
    model = KnowledgeSpace(config.model, tables.train.classes, towers=towers).to(runtime.device)
    per_rank = runtime.local_batch(config.loop.batch_size)
    sampler = pdata.sampler_config(config, towers.image_size, per_rank)
    train_cache = pdata.image_cache(tables.train, config, towers.image_size, "train")
    val_cache = pdata.image_cache(tables.val, config, towers.image_size, "val")
    norm = {"mean": towers.image_mean, "std": towers.image_std}
    model.eval()  # deterministic tower features (a trainable tower would otherwise apply dropout)
    text_features = pdata.frozen_text_features(model, tables.train.strings)
    val_text_features = pdata.frozen_text_features(model, tables.val.strings)
    image_features = None
    if config.data.cache_image_features:
        image_features = pdata.frozen_image_features(model, train_cache.to(runtime.device), sampler, **norm)
    val_image_features = pdata.frozen_image_features(model, val_cache.to(runtime.device), sampler, **norm)
    log(
        f"prepared in {time.perf_counter() - t0:.1f} s (images decoded once, frozen text features computed once)"
    )
    return Prepared(
        config, run_dir, runtime, tables, model, sampler, train_cache, val_cache,
        text_features, val_text_features, image_features, val_image_features,
    )  # fmt: skip


def evaluator(prep: Prepared, *, untrained: bool = False):
    """A function model -> matching scores on the validation records (``config.eval`` protocol)."""
    from bamco_fast.matching import matching_scores

    from .pretrain_data import frozen_text_features, matching_inputs

    cfg = prep.config.eval
    cache = prep.val_cache.to(prep.runtime.device)

    def run_eval(model) -> dict[str, float]:
        text_features = prep.val_text_features
        if not untrained and not model.config.freeze_text_tower:  # a trained text tower: encode again
            text_features = frozen_text_features(model, prep.tables.val.strings)
        inputs = matching_inputs(
            model,
            prep.tables.val,
            cache,
            prep.sampler,
            text_features=text_features,
            image_features=prep.val_image_features,
            intra=cfg.intra,
            batch_size=cfg.batch_size,
            untrained=untrained,
            seed=prep.config.loop.seed,
        )
        return matching_scores(inputs, protocol=cfg.protocol, batch_size=cfg.batch_size)

    return run_eval


def _train_one(prep: Prepared, run_dir: Path, resume: Path | None, log=print) -> dict[str, float]:
    """Train ``prep.model`` into ``run_dir``; load the best weights; save ``knowledge_space/``; validation scores."""
    from bamco_fast.pretraining import KnowledgeBatches

    from .loop import load_trainable_state, train

    config, runtime = prep.config, prep.runtime
    towers = prep.model.towers
    batches = KnowledgeBatches(
        prep.tables.train,
        prep.train_cache.to(runtime.device),
        prep.sampler,
        seed=config.loop.seed,
        rank=runtime.rank,
        world_size=runtime.world_size,
        mean=towers.image_mean,
        std=towers.image_std,
    )
    objective = None
    if config.objective.loss == "bamco":
        objective = prep.model.objective(
            prep.tables.train.class_counts,
            backend=config.objective.backend,
            gather_distributed=runtime.distributed,
        )
    text_tokens = None
    if not prep.model.config.freeze_text_tower:
        text_tokens = prep.model.towers.tokenize(list(prep.tables.train.strings)).to(runtime.device)
    task = PretrainTask(
        prep.model,
        batches,
        objective,
        config=config,
        text_features=prep.text_features,
        image_features=prep.image_features,
        evaluator=evaluator(prep),
        text_tokens=text_tokens,
    )
    config_dict = config_to_dict(config)
    if runtime.is_main:
        save_resolved(config, run_dir)
    log(
        f"training '{config.objective.loss}': {config.loop.epochs} epoch(s) x {len(batches)} steps"
        f"{f' (stopping at step {config.loop.max_steps})' if config.loop.max_steps else ''} of "
        f"{config.loop.batch_size} samples, {sum(p.numel() for p in prep.model.parameters() if p.requires_grad):,} "
        f"trainable parameters, device {runtime.device}, {runtime.world_size} process(es)"
    )
    result = train(
        task, config.loop, config.optim, run_dir, config_dict=config_dict, runtime=runtime, resume=resume
    )
    if result.interrupted or result.stopped_early:
        return {}
    best = run_dir / "checkpoints" / "best.pt"
    if best.is_file():
        state = load_checkpoint(best)
        load_trainable_state(prep.model, state["model"], str(best))
        log(
            f"selected step {state['step']} on validation ({task.selection_metric} = {result.best_value:.4f})"
        )
    prep.model.eval()
    if runtime.is_main:
        prep.model.save(run_dir / "knowledge_space", include_towers=config.tiny.enabled, overwrite=True)
    with torch.no_grad():
        return task.evaluator(prep.model)


def _fresh_run_dir(config: PretrainConfig, explicit: bool) -> PretrainConfig:
    """Refuse to overwrite a run's checkpoints; a default folder that is taken gets a numbered sibling."""
    run_dir = Path(config.out)
    if not (run_dir / "checkpoints").is_dir() or not any((run_dir / "checkpoints").iterdir()):
        return config
    if explicit:
        raise FileExistsError(
            f"--out {run_dir} already holds a run (checkpoints/): continue it with --resume {run_dir}, "
            f"or choose another --out"
        )
    n = 2
    while (Path(f"{config.out}-{n}") / "checkpoints").is_dir():
        n += 1
    return dataclasses.replace(config, out=f"{config.out}-{n}")


def _write_table(
    run_dir: Path, results: dict[str, dict[str, float]], config: PretrainConfig, val_source: str
) -> str:
    from bamco_fast.matching import format_matching_table

    table = format_matching_table(results)
    header = (
        f"matching on {config.data.dataset} validation records ({val_source}), protocol "
        f"'{config.eval.protocol}', top-k accuracy in %\n"
    )
    atomic_write_bytes(run_dir / "matching.txt", (header + table + "\n").encode())
    payload = {
        "protocol": config.eval.protocol,
        "dataset": config.data.dataset,
        "validation": val_source,
        "results": results,
    }
    atomic_write_bytes(run_dir / "matching.json", (json.dumps(payload, indent=1) + "\n").encode())
    return header + table


def _load_run_config(run: Path, sets: list[str]) -> PretrainConfig:
    path = run / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"--eval-only {run}: no config.json (not a pretraining run folder)")
    config = config_from_dict(PretrainConfig, json.loads(path.read_text(encoding="utf-8")))
    return resolve_config(config, None, sets)


def _eval_only(args, log=print) -> int:
    from bamco_fast.models.knowledge_space import KnowledgeSpace

    from .runtime import init_runtime

    run = Path(args.eval_only)
    config = _load_run_config(run, args.sets)
    if not (run / "knowledge_space").is_dir():
        raise FileNotFoundError(f"--eval-only {run}: no knowledge_space/ folder (the run did not finish)")
    runtime = init_runtime(config.loop.device)
    config = dataclasses.replace(config, tiny=dataclasses.replace(config.tiny, enabled=False))
    prep = prepare(config, runtime, log=log)
    results = {"untrained": evaluator(prep, untrained=True)(prep.model)}
    for name, folder in (
        ("alignment", run / "alignment" / "knowledge_space"),
        ("BaMCo", run / "knowledge_space"),
    ):
        if folder.is_dir():
            model = KnowledgeSpace.load(folder, device=runtime.device).eval()
            with torch.no_grad():
                results[name] = evaluator(prep)(model)
    print(_write_table(run, results, config, prep.tables.val_source))
    from .matching_page import write_matching_page

    print(f"matching page: {write_matching_page(prep, run, results)}")
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the ``pretrain`` command (see the module docstring); bad input -> message on stderr, status 2."""
    from bamco_fast.pretraining import KnowledgeTableError

    try:
        return _run(args)
    except (
        ConfigError,
        CheckpointError,
        KnowledgeTableError,
        ValueError,
        FileNotFoundError,
        FileExistsError,
    ) as exc:
        print(f"pretrain: error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from .runtime import init_runtime, shutdown_runtime

    if args.eval_only is not None:
        return _eval_only(args)
    config = resolve_config(preset(args.preset), args.config, args.sets)
    explicit_out = args.out is not None or any(s.split("=", 1)[0].strip() == "out" for s in args.sets)
    if args.out is not None:
        config = dataclasses.replace(config, out=args.out)
    if args.resume is None:
        config = _fresh_run_dir(config, explicit_out)
    elif not Path(args.resume).exists():
        raise CheckpointError(f"--resume: {args.resume} does not exist")
    if config.loop.num_threads:
        torch.set_num_threads(config.loop.num_threads)
    runtime = init_runtime(config.loop.device)
    log = print if runtime.is_main else (lambda *a, **k: None)
    try:
        run_dir = Path(config.out)
        log(f"pretrain: preset '{args.preset}', run folder {run_dir}")
        prep = prepare(config, runtime, log=log)
        results: dict[str, dict[str, float]] = {}
        if runtime.is_main:
            with torch.no_grad():
                results["untrained"] = evaluator(prep, untrained=True)(prep.model)
        bamco = _train_one(prep, run_dir, args.resume, log=log)
        if not bamco:
            return 0  # stopped early or interrupted: a resumable checkpoint was written
        if args.alignment:
            align_cfg = dataclasses.replace(
                prep.config,
                objective=dataclasses.replace(prep.config.objective, loss="alignment"),
                tiny=dataclasses.replace(prep.config.tiny, enabled=False),
                out=str(run_dir / "alignment"),
            )
            align_prep = prepare(align_cfg, runtime, log=log)
            results["alignment"] = _train_one(align_prep, run_dir / "alignment", None, log=log)
        results["BaMCo"] = bamco
        if runtime.is_main:
            print(_write_table(run_dir, results, prep.config, prep.tables.val_source))
            from .matching_page import write_matching_page

            print(f"matching page: {write_matching_page(prep, run_dir, results, {'BaMCo': prep.model})}")
            print(
                f"outputs in {run_dir}: knowledge_space/ (the model), checkpoints/, metrics.jsonl, curves.png, "
                f"matching.txt"
            )
        return 0
    finally:
        shutdown_runtime(runtime)


def main(argv: list[str] | None = None) -> int:
    """``python -m bamco_fast.train.pretrain`` (the same as the ``pretrain`` sub-command)."""
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.train pretrain", description=__doc__.splitlines()[0]
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
