"""VQA training step at the paper's shapes: ours vs the published step, with a profile; and answers/s.

    python benchmarks/bench_vqa_step.py                # every row side by side in one run: table + ratios
    python benchmarks/bench_vqa_step.py --width tiny   # the same code on tiny models and the packaged data
    pytest benchmarks/bench_vqa_step.py --benchmark-only

Shapes (``--width full``): Llama 3.2 1B (1,235.8 M parameters, vocabulary 128,256) with LoRA r=64,
alpha=16 on every projection; BiomedCLIP towers (ViT-B/16 at 224 px, PubMedBERT-base at context 256); the
intra-class encoder at K = 36 images of 84 x 84, width 12; VQA-RAD's training questions and images and
BaMCo's VQA-RAD knowledge records for the intra-class bank (from ``../shared/data``; skipped when absent).
Every model has random weights (:mod:`random_folders`), the same in every row. float32 on CPU.

Rows (one optimiser step each, batch 4 by default):

* ``published`` (:mod:`published_vqa`): question images decoded every step; frozen ViT run twice (patches
  and the retrieval query) and the text path per question at context 256; 36 PIL decodes and crops per
  question for the intra-class stack, encoded by the eager encoder; prompt + answer right-padded to 256
  tokens and the LM head over all 256 positions.
* ``ours, first epoch``: the library's step without the feature cache: question images from the uint8
  table, frozen parts run once per step (ViT, text tower, the fused intra-class encoder on the seeded
  stack), left padding to the batch's longest prompt, the LM head at the answer positions only.
* ``ours``: the training stage's step (``data.cache_frozen_features``): the frozen features of every
  training question computed once before training (:mod:`bamco_fast.models.vqa_features`; its cost per
  question is reported apart, as a one-time cost), then only projectors, LLM and the answer-only loss.
* ``ours, full logits``: ``ours`` with the LM head at every position of the left-padded batch
  (``model.answer_only_logits=false``): what the answer-only loss saves, alone.

Profile columns (:mod:`vqa_step_profile`): data, towers, intra (encoder), llm (projectors + backbone, fwd +
bwd), loss (LM head + cross-entropy, fwd + bwd), optimiser. Peak memory: the step's rise of the process's
peak RSS over its RSS before the step (``VmHWM`` reset first, freed heap returned; :mod:`memory`), so the
resident weights and caches are not counted; the process RSS is given beside it.

Evaluation side: greedy answers (8 new tokens) per second for 8 questions, batched (one call) vs one
question at a time, on the same model.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from memory import peak_extra_rss, release_freed_memory, rss_bytes
from published_vqa import PublishedIntraLoader, PublishedVQAStep, StepResult
from random_folders import random_llm_folder, random_towers_folder
from step_rows import fastest_row, phase_table, record_row
from vqa_step_profile import PHASES, VQAStepProfiler

_SHARED = Path(
    os.environ.get("BAMCO_FAST_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)
BATCH = 4
ROWS = ("published", "ours, first epoch", "ours", "ours, full logits")


@dataclass
class Setup:
    model: object
    records: list
    table: object
    loader: PublishedIntraLoader
    optimizer: object
    facts: dict = field(default_factory=dict)


def _data(width: str):
    """``(train records, knowledge file, image root, image map, texts)`` of VQA-RAD (full) or the demo (tiny)."""
    from bamco_fast.data import load_split

    if width == "tiny":
        from bamco_fast.demo_data import demo_paths

        paths = demo_paths()
        records = load_split("vqa-rad", paths.vqa_root, "train")
        return records, paths.knowledge["train"], paths.images, None, "packaged demo subset"
    kg = _SHARED / "bamco_kg" / "VQARAD"
    root = _SHARED / "vqa_rad"
    if not (kg / "KG_VQARAD_Train.json").is_file() or not (root / "VQA_RAD Image Folder").is_dir():
        pytest.skip(
            f"needs VQA-RAD and BaMCo's VQA-RAD knowledge under {_SHARED} (set BAMCO_FAST_SHARED_DATA)"
        )
    records = load_split("vqa-rad", root / "hf_flaviagiammarino_order", "train")
    return (
        records,
        kg / "KG_VQARAD_Train.json",
        root / "VQA_RAD Image Folder",
        kg / "image_id_to_synpic.json",
        "VQA-RAD train",
    )


def _knowledge_space(width: str, kg_file: Path, image_map, towers_folder: Path):
    from bamco_fast.knowledge import load_image_map
    from bamco_fast.knowledge.published import read_knowledge_file
    from bamco_fast.models.knowledge_space import KnowledgeSpace, KnowledgeSpaceConfig
    from bamco_fast.models.towers import load_towers

    records = read_knowledge_file(kg_file, image_map=load_image_map(image_map) if image_map else None)
    classes = sorted({r.head_entity.lower() for r in records})
    shapes = {} if width == "full" else {"num_images": 64, "intra_image_size": 32, "feature_size": 1}
    config = KnowledgeSpaceConfig(tower=f"local-dir:{towers_folder}", **shapes)
    torch.manual_seed(0)
    return KnowledgeSpace(config, classes, towers=load_towers(config.tower)).eval()


def _pools(bank, kg_file: Path, image_root: Path, image_map) -> list[list[Path]]:
    """The bank's classes' image files, in the bank's class order (for the published per-step loader)."""
    from bamco_fast.knowledge import load_image_map
    from bamco_fast.knowledge.published import read_knowledge_file

    records = read_knowledge_file(kg_file, image_map=load_image_map(image_map) if image_map else None)
    pools: dict[str, list[Path]] = {}
    for r in records:
        pools.setdefault(r.head_entity.lower(), []).append(Path(image_root) / r.image)
    return [list(dict.fromkeys(pools[name.lower()])) for name in bank.class_names]


def load_setup(width: str = "full", llm: str = "llama-3.2-1b") -> Setup:
    """Models with random weights, the intra-class bank and the training questions (see the docstring)."""
    from bamco_fast.data.images import ImageTable
    from bamco_fast.models.intra_bank import build_intra_bank
    from bamco_fast.models.vqa import VQAModelConfig, build_vqa_model

    records, kg_file, image_root, image_map, source = _data(width)
    texts = [f"{r.question} {r.answer}" for r in records]
    facts: dict = {"data": f"{source}: {len(records)} questions", "width": width, "llm": llm}
    start = time.perf_counter()
    towers_folder = random_towers_folder(texts, width=width)
    llm_folder = random_llm_folder(llm, texts, width=width)
    facts["folders_s"] = round(time.perf_counter() - start, 1)
    ks = _knowledge_space(width, kg_file, image_map, towers_folder)
    start = time.perf_counter()
    bank = build_intra_bank(ks, kg_file, image_root, image_map=image_map, sampling="question")
    facts["bank_s"] = round(time.perf_counter() - start, 1)
    torch.manual_seed(0)
    model = build_vqa_model(VQAModelConfig(llm=str(llm_folder), knowledge_space=""), ks, bank)
    model.train()
    towers = ks.towers
    table = ImageTable(
        [r.image_path for r in records], towers.image_size, towers.image_mean, towers.image_std
    )
    loader = PublishedIntraLoader(
        _pools(bank, kg_file, image_root, image_map),
        towers.image_mean,
        towers.image_std,
        num_images=int(ks.config.num_images),
        size=int(ks.config.intra_image_size),
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=1e-4, weight_decay=0.0)
    facts["parameters"] = sum(p.numel() for p in model.llm.parameters())
    facts["trainable"] = sum(p.numel() for p in trainable)
    return Setup(model, records, table, loader, optimizer, facts)


# -------------------------------------------------------------------------------------------- rows
def _batches(setup: Setup, batch: int, count: int) -> list[list]:
    return [setup.records[i * batch : (i + 1) * batch] for i in range(count)]


def ours_step(setup: Setup, records, *, frozen=None, answer_only: bool = True) -> StepResult:
    """One step of the library's training step (``frozen``: this batch's rows of the feature cache;
    ``answer_only=False``: the LM head at every position)."""
    model = setup.model
    prof = VQAStepProfiler(model)
    try:
        prof.start()
        questions, answers, qids = ([getattr(r, k) for r in records] for k in ("question", "answer", "qid"))
        with prof.phase("data"):
            batch = model.encode_batch(questions, answers)
            images = (
                None
                if frozen is not None
                else setup.table.normalized(setup.table.rows([r.image_path for r in records]))
            )
        if frozen is None:
            with torch.no_grad(), prof.frozen():
                frozen = model.frozen_features(images, questions, qids=qids, report_retrieval=False)
        return StepResult(*prof.finish_step(model, frozen, batch, setup.optimizer, answer_only=answer_only))
    finally:
        prof.close()


def feature_cache(setup: Setup, batches: list[list]) -> tuple[list, dict]:
    """The frozen features of the timed batches' questions (as a training run computes them for every
    training question before its first step: :func:`~bamco_fast.models.vqa_features.frozen_feature_table`),
    and their one-time cost."""
    from bamco_fast.models.vqa_features import frozen_feature_table

    table = setup.table
    records = [r for b in batches for r in b]
    start = time.perf_counter()
    cache = frozen_feature_table(
        setup.model,
        [str(r.image_path) for r in records],
        lambda keys: table.normalized(table.rows(keys)),
        [r.question for r in records],
        [r.qid for r in records],
    )
    seconds = time.perf_counter() - start
    out, offset = [], 0
    for chunk in batches:
        out.append(cache.select(range(offset, offset + len(chunk))))
        offset += len(chunk)
    facts = {
        "cache_s_per_question": round(seconds / len(records), 4),
        "cache_bytes_per_question": cache.nbytes // len(records),
        "distinct_images": int(cache.image_classes.shape[0]),
    }
    return out, facts


def run_row(setup: Setup, row: str, batch: int = BATCH, steps: int = 2) -> dict:
    """One warm-up step, then ``steps`` timed steps (the last one with its peak memory)."""
    if row not in ROWS:
        raise ValueError(f"row must be one of {ROWS}, got {row!r}")
    batches = _batches(setup, batch, steps + 1)
    facts: dict = {}
    if row == "published":
        peer = PublishedVQAStep(setup.model, setup.loader, setup.optimizer)

        def step(i: int) -> StepResult:
            return peer.step(batches[i])
    elif row in ("ours", "ours, full logits"):
        cached, facts = feature_cache(setup, batches)
        answer_only = row == "ours"

        def step(i: int) -> StepResult:
            return ours_step(setup, batches[i], frozen=cached[i], answer_only=answer_only)
    else:

        def step(i: int) -> StepResult:
            return ours_step(setup, batches[i])

    step(0)
    results = [step(i) for i in range(1, steps)]
    release_freed_memory()
    with peak_extra_rss() as peak:
        results.append(step(steps))
    best, out = fastest_row(row, batch, results)
    return {
        **out,
        "loss": best.loss,
        "peak_rise_gib": peak["bytes"] / 2**30,
        "process_gib": peak["total_bytes"] / 2**30,
        "facts": facts,
    }


def answers_per_second(setup: Setup, questions: int = 8, max_new_tokens: int = 8) -> dict:
    """Greedy answers/s: one batched call vs one call per question (the same answers; checked)."""
    model, table = setup.model, setup.table
    records = setup.records[:questions]
    images = table.normalized(table.rows([r.image_path for r in records]))
    qs, ids = [r.question for r in records], [r.qid for r in records]
    model.generate(images[:1], qs[:1], qids=ids[:1], max_new_tokens=2)  # warm-up
    start = time.perf_counter()
    batched = model.generate(images, qs, qids=ids, max_new_tokens=max_new_tokens)
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    single = [
        model.generate(images[i : i + 1], qs[i : i + 1], qids=ids[i : i + 1], max_new_tokens=max_new_tokens)[
            0
        ]
        for i in range(len(qs))
    ]
    t_single = time.perf_counter() - start
    model.train()
    return {
        "questions": len(qs),
        "batched_answers_per_s": len(qs) / t_batched,
        "single_answers_per_s": len(qs) / t_single,
        "same_answers": [a.tokens for a in batched] == [a.tokens for a in single],
    }


# ------------------------------------------------------------------------------------------ pytest
@pytest.fixture(scope="module")
def setup():
    return load_setup(os.environ.get("BAMCO_FAST_BENCH_WIDTH", "full"))


def _record(benchmark, out: dict, setup: Setup) -> None:
    peaks = {k: round(out[k], 3) for k in ("peak_rise_gib", "process_gib")}
    record_row(benchmark, out, setup.facts, **peaks)


@pytest.mark.parametrize("row", ROWS)
def test_vqa_step(benchmark, setup, row):
    benchmark.group = f"VQA step B={BATCH} (LLM {setup.facts['llm']}, K=36, 84 px, 224 px)"
    out = {}
    benchmark.pedantic(lambda: out.update(run_row(setup, row)), rounds=1, iterations=1, warmup_rounds=0)
    _record(benchmark, out, setup)


def test_vqa_answers_per_second(benchmark, setup):
    benchmark.group = "VQA generation (8 questions, 8 new tokens)"
    out = {}
    benchmark.pedantic(lambda: out.update(answers_per_second(setup)), rounds=1, iterations=1, warmup_rounds=0)
    assert out["same_answers"]
    benchmark.extra_info.update({k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()})


# --------------------------------------------------------------------------------------------- CLI
def format_table(rows: list[dict]) -> str:
    """Markdown table: one line per row, phase seconds and shares, samples/s, ratios to published."""
    base = next((r for r in rows if r["row"] == "published"), None)

    def ratio(r: dict) -> str:
        if base is None or r is base:
            return "-"
        return f"{r['samples_per_s'] / base['samples_per_s']:.1f}x, memory {r['peak_rise_gib'] / base['peak_rise_gib']:.2f}x"

    return phase_table(
        rows,
        PHASES,
        seconds_head="step s",
        ratio=ratio,
        tail={
            "step peak rise": lambda r: f"{r['peak_rise_gib']:.2f} GiB",
            "process RSS": lambda r: f"{r['process_gib']:.2f} GiB",
        },
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--width", choices=("full", "tiny"), default="full")
    parser.add_argument("--llm", choices=("llama-3.2-1b", "llama-3.2-3b", "gpt2-xl"), default="llama-3.2-1b")
    parser.add_argument("--batch", type=int, default=BATCH)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per row (after one warm-up step)")
    parser.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    parser.add_argument("--no-generation", action="store_true", help="skip the answers/s measurement")
    args = parser.parse_args(argv)
    try:
        setup = load_setup(args.width, args.llm)
    except pytest.skip.Exception as exc:
        print(f"skipped: {exc}")
        return 0
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; RSS {rss_bytes() / 2**30:.2f} GiB; {setup.facts}",
        flush=True,
    )
    rows = []
    for row in args.rows:
        rows.append(run_row(setup, row, args.batch, args.steps))
        print(
            f"{row}: steps {[round(s, 2) for s in rows[-1]['all_seconds']]} s, loss {rows[-1]['loss']:.4f}",
            flush=True,
        )
    print(format_table(rows))
    for r in rows:
        if r["facts"]:
            print(f"{r['row']}: one-time {r['facts']}")
    if not args.no_generation:
        gen = answers_per_second(setup)
        print(
            f"generation, {gen['questions']} questions x 8 new tokens: batched {gen['batched_answers_per_s']:.2f} "
            f"answers/s, one at a time {gen['single_answers_per_s']:.2f} answers/s "
            f"({gen['batched_answers_per_s'] / gen['single_answers_per_s']:.1f}x); same answers: {gen['same_answers']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
