"""Knowledge-space pretraining step at the paper's shapes: ours vs the published pipeline, with a profile.

    python benchmarks/bench_pretrain_step.py               # one run, every row side by side: table + ratios
    pytest benchmarks/bench_pretrain_step.py --benchmark-only

Shapes: K = 36 intra-class images of 84 x 84, a 224-px reference image, C = 285 classes (BaMCo's
``KG_VQARAD_Train.json`` with the full-size VQA-RAD images from ``../shared/data``; skipped when absent),
D = 512. Towers: the real architectures with random weights built locally
(:mod:`bamco_fast.models.random_biomedclip`: ViT-B/16 and BERT-base in BiomedCLIP's open_clip layout,
context 256; cached per tokenizer text set, see :func:`random_towers_folder`), loaded through
``load_towers("local-dir:...")``. float32 on CPU.

Rows (one training step each: data -> forward -> loss -> backward -> AdamW):

* ``published`` (batch 8; it needs ~43 GB at 48): :class:`published_pretrain.PublishedPipeline`: per-sample
  PIL loading (37 decodes and PIL augmentations per sample), both frozen towers run every step (texts
  tokenised to 256), eager encoder in the published layout, Python-loop balanced loss x 3.
* ``ours`` (batch 8 and 48): the library: :class:`bamco_fast.pretraining.KnowledgeBatches` (uint8 image
  cache decoded once, batched tensor augmentation), :class:`bamco_fast.models.knowledge_space.KnowledgeSpace`
  with the C++ encoder, :class:`bamco_fast.BaMCoObjective` with the C++ loss, and the frozen text-tower
  outputs cached over the finite string table (exact: texts are not augmented). The image tower runs
  every step on the augmented reference view, as in the paper.
* ``ours+image-cache`` (batch 8): as ``ours`` with the frozen image-tower outputs cached too; this needs
  an unaugmented reference view (``augment_reference=False``), a documented change from the paper.

Caches are one-time costs, reported apart (``extra_info``/the printed notes), never inside a step: the
uint8 image cache; the text features, computed here only for the strings the timed batches draw (a
batch is a pure function of (seed, epoch, index), so they are known in advance) with the per-string cost
extrapolated to the whole table; the image features likewise. Computing a text feature trims the
all-padding columns of its tokens first (the padding is masked out of attention, so the CLS output is the
same), which is what makes caching the whole table cheap.

Profile columns (:mod:`step_profile`): data, towers (frozen forwards + tokenising or cache look-ups),
encoder (forward + backward), loss (heads, objective, their backward), optimiser. Peak memory of the
batch-48 step: the process's peak RSS (``VmHWM``, reset just before the step; :mod:`memory`), measured
first in the run so nothing freed earlier inflates it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from frozen_caches import image_feature_cache, text_feature_cache
from memory import peak_extra_rss, release_freed_memory
from published_pretrain import PublishedPipeline, StepResult, published_model
from random_folders import random_towers_folder
from step_profile import PHASES, StepProfiler, adamw_as_published
from step_rows import fastest_row, phase_table, record_row

_SHARED = Path(
    os.environ.get("BAMCO_FAST_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
PUBLISHED_BATCH = 8
BATCH_48 = 48


# ---------------------------------------------------------------------------------------- our step
class OursPipeline:
    """The library's step: sampler + cached frozen features + KnowledgeSpace + fused objective + AdamW.

    Args:
        table, cache: knowledge table and its uint8 image cache.
        model: a :class:`KnowledgeSpace` (its encoder backend is the model's).
        batch_size: B.
        image_features: also cache the image-tower outputs (reference view not augmented).
        loss_backend: :class:`bamco_fast.BaMCoObjective` backend.
    """

    def __init__(
        self,
        table,
        cache,
        model,
        *,
        batch_size: int,
        image_features: bool = False,
        loss_backend: str | None = "cpp",
        seed: int = 0,
    ) -> None:
        from bamco_fast.pretraining import KnowledgeBatches, SamplerConfig

        cfg, towers = model.config, model.towers
        sampler = SamplerConfig(
            batch_size=batch_size,
            num_images=cfg.num_images,
            image_size=towers.image_size,
            intra_image_size=cfg.intra_image_size,
            augment_reference=not image_features,
        )
        self.model = model.train()
        self.batches = KnowledgeBatches(
            table, cache, sampler, seed=seed, mean=towers.image_mean, std=towers.image_std
        )
        self.objective = model.objective(table.class_counts, backend=loss_backend)
        self.text = text_feature_cache(model, table.strings)
        self.images = image_feature_cache(model, cache, sampler) if image_features else None
        self.optimizer = adamw_as_published(model)
        self.profiler = StepProfiler(model)

    def prepare(self, indices: Sequence[int], epoch: int = 0) -> dict[str, float]:
        """Fill the feature caches for batches ``indices`` of ``epoch`` (one-time work, not a step)."""
        facts = {}
        for name, cache, field in (("text", self.text, "text_index"), ("image", self.images, "image_index")):
            if cache is None:
                continue
            keys = torch.cat([getattr(self.batches.draw(epoch, i), field) for i in indices])
            facts[f"{name}_features_computed"] = cache.ensure(keys)
            facts[f"{name}_feature_s_each"] = cache.seconds_per_key()
        return facts

    def losses(self, batch, text_features, image_features=None) -> dict[str, torch.Tensor]:
        if image_features is None:
            out = self.model(batch.images, intra_stacks=batch.intra_stacks, text_features=text_features)
        else:
            out = self.model(
                image_features=image_features, text_features=text_features, intra_stacks=batch.intra_stacks
            )
        return self.model.loss(out, batch.labels, self.objective)

    def step(self, index: int, epoch: int = 0) -> StepResult:
        prof = self.profiler
        prof.start()
        with prof.phase("data"):
            batch = self.batches.batch(epoch, index)
        with prof.phase("towers"):
            text_features = self.text(batch.text_index)
            image_features = self.images(batch.image_index) if self.images is not None else None
        with prof.forward_backward():
            terms = self.losses(batch, text_features, image_features)
            terms["loss"].backward()
        with prof.phase("optimiser"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return StepResult(prof.stop(), {k: float(v.detach()) for k, v in terms.items()})


# ------------------------------------------------------------------------------------------- setup
@dataclass
class Setup:
    table: object
    cache: object
    towers: object
    config: object
    source: str
    facts: dict


def load_setup() -> Setup:
    """Real VQA-RAD knowledge + images, the uint8 cache and the random full-size towers (skips when absent)."""
    kg = _SHARED / "bamco_kg" / "VQARAD"
    images = _SHARED / "vqa_rad" / "VQA_RAD Image Folder"
    if not (kg / "KG_VQARAD_Train.json").is_file() or not images.is_dir():
        pytest.skip(
            f"needs BaMCo's VQA-RAD knowledge and images under {_SHARED} (set BAMCO_FAST_SHARED_DATA)"
        )
    from bamco_fast.knowledge import load_image_map
    from bamco_fast.models.knowledge_space import KnowledgeSpaceConfig
    from bamco_fast.models.towers import load_towers
    from bamco_fast.pretraining import build_image_cache, load_knowledge_table

    facts = {}
    table = load_knowledge_table(
        kg / "KG_VQARAD_Train.json", images, image_map=load_image_map(kg / "image_id_to_synpic.json")
    )
    start = time.perf_counter()
    cache = build_image_cache(table.image_paths, 256, names=table.images)
    facts["image_cache_build_s"] = round(time.perf_counter() - start, 2)
    folder = random_towers_folder(list(table.strings))
    towers = load_towers(f"local-dir:{folder}")
    config = KnowledgeSpaceConfig(tower=f"local-dir:{folder}", intra_backend="cpp")
    source = f"VQA-RAD KG_VQARAD_Train.json: {len(table)} records, C={table.num_classes}, {len(table.images)} images"
    return Setup(table, cache, towers, config, source, facts)


def make_pipeline(setup: Setup, row: str, batch: int):
    """``row`` in ``published``, ``ours``, ``ours+image-cache`` -> a pipeline with a ``run(index)`` step."""
    from bamco_fast.models.knowledge_space import KnowledgeSpace

    torch.manual_seed(0)
    names = list(setup.table.classes)
    if row == "published":
        return PublishedPipeline(setup.table, published_model(setup.config, names, setup.towers))
    model = KnowledgeSpace(setup.config, names, towers=setup.towers)
    return OursPipeline(setup.table, setup.cache, model, batch_size=batch, image_features=row != "ours")


def prepare_row(setup: Setup, row: str, batch: int, steps: int) -> tuple[Callable[[], StepResult], dict]:
    """A zero-argument step (batches 0, 1, ... of epoch 0 in turn) and the one-time facts of its set-up
    (caches filled for the first ``steps`` batches)."""
    pipe = make_pipeline(setup, row, batch)
    counter = iter(range(10**9))
    if isinstance(pipe, OursPipeline):
        facts = pipe.prepare(list(range(steps)))
        return (lambda: pipe.step(next(counter))), facts
    from bamco_fast.pretraining import KnowledgeBatches, SamplerConfig

    order = KnowledgeBatches(setup.table, setup.cache, SamplerConfig(batch_size=batch)).permutation(0)

    def step() -> StepResult:
        i = next(counter)
        return pipe.step(order[i * batch : (i + 1) * batch].tolist())

    return step, {}


def summarise(row: str, batch: int, results: list[StepResult], facts: dict) -> dict:
    """``{"row", "batch", "seconds" (min), "samples_per_s", "times" (phases of the fastest step), "losses",
    "all_seconds", "facts"}``."""
    best, out = fastest_row(row, batch, results)
    return {**out, "losses": best.losses, "facts": facts}


def run_row(setup: Setup, row: str, batch: int, rounds: int) -> dict:
    """Time ``rounds`` steps of ``row``; see :func:`summarise`."""
    step, facts = prepare_row(setup, row, batch, rounds)
    return summarise(row, batch, [step() for _ in range(rounds)], facts)


def run_batch48(setup: Setup) -> dict:
    """One step of ours at batch 48 with the process's peak RSS during it."""
    step, facts = prepare_row(setup, "ours", BATCH_48, 1)
    release_freed_memory()
    with peak_extra_rss() as peak:
        result = step()
    out = summarise("ours", BATCH_48, [result], facts)
    out["peak_process_gib"] = peak["total_bytes"] / 2**30
    out["peak_step_rise_gib"] = peak["bytes"] / 2**30
    return out


# ------------------------------------------------------------------------------------------ pytest
_ROWS = [
    ("published", PUBLISHED_BATCH, 2),
    ("ours", PUBLISHED_BATCH, 3),
    ("ours+image-cache", PUBLISHED_BATCH, 3),
]


@pytest.fixture(scope="module")
def setup():
    return load_setup()


def _record(benchmark, out: dict, setup: Setup) -> None:
    peaks = {k: round(out[k], 3) for k in ("peak_process_gib", "peak_step_rise_gib") if k in out}
    record_row(benchmark, out, setup.facts, losses=out["losses"], data=setup.source, **peaks)


def test_pretrain_step_b48(benchmark, setup):
    """Ours at batch 48: one step (first in the module, so the process peak is not inflated)."""
    benchmark.group = "pretrain step B=48 (K=36, 84 px, 224 px, C=285)"
    out = {}
    benchmark.pedantic(lambda: out.update(run_batch48(setup)), rounds=1, iterations=1, warmup_rounds=0)
    _record(benchmark, out, setup)


@pytest.mark.parametrize(("row", "batch", "rounds"), _ROWS, ids=[f"{r}-B{b}" for r, b, _ in _ROWS])
def test_pretrain_step(benchmark, setup, row, batch, rounds):
    benchmark.group = "pretrain step B=8 (K=36, 84 px, 224 px, C=285)"
    step, facts = prepare_row(setup, row, batch, rounds)
    results: list[StepResult] = []
    benchmark.pedantic(lambda: results.append(step()), rounds=rounds, iterations=1, warmup_rounds=0)
    _record(benchmark, summarise(row, batch, results, facts), setup)


# --------------------------------------------------------------------------------------------- CLI
def format_table(rows: list[dict]) -> str:
    """Markdown table: one line per row, phase seconds and shares, samples/s and ratio to published."""
    base = next((r["samples_per_s"] for r in rows if r["row"] == "published"), None)
    return phase_table(
        rows,
        PHASES,
        seconds_head="step s (min)",
        ratio=lambda r: f"{r['samples_per_s'] / base:.1f}x" if base else "-",
        tail={"peak RSS": lambda r: f"{r['peak_process_gib']:.2f} GiB" if "peak_process_gib" in r else "-"},
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--rounds-published", type=int, default=2, help="timed published steps (min reported)"
    )
    parser.add_argument("--rounds-ours", type=int, default=3, help="timed steps of each of our B=8 rows")
    parser.add_argument("--skip-b48", action="store_true", help="skip the batch-48 step")
    args = parser.parse_args(argv)
    try:
        setup = load_setup()
    except pytest.skip.Exception as exc:
        print(f"skipped: {exc}")
        return 0
    print(
        f"data: {setup.source}; torch {torch.__version__}, {torch.get_num_threads()} threads; {setup.facts}"
    )
    rows = []
    if not args.skip_b48:
        rows.append(run_batch48(setup))
        print(
            f"B=48 done: {rows[-1]['seconds']:.1f} s, peak {rows[-1]['peak_process_gib']:.2f} GiB", flush=True
        )
    for row, rounds in (
        ("published", args.rounds_published),
        ("ours", args.rounds_ours),
        ("ours+image-cache", args.rounds_ours),
    ):
        rows.append(run_row(setup, row, PUBLISHED_BATCH, rounds))
        print(f"{row} done: rounds {[round(s, 2) for s in rows[-1]['all_seconds']]}", flush=True)
    print(format_table(rows))
    for r in rows:
        print(f"{r['row']} B={r['batch']}: losses {r['losses']}; one-time {r['facts']}")
    n_strings = len(setup.table.strings)
    for r in rows:
        each = r["facts"].get("text_feature_s_each")
        if each:
            print(
                f"text-feature cache, whole table ({n_strings} strings) est.: {each * n_strings:.0f} s once"
            )
            break
    return 0


if __name__ == "__main__":
    sys.exit(main())
