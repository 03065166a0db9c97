"""Rehearse the paper's runs at their real sizes on CPU, through the command lines users run.

    python benchmarks/paper_scale.py [--work runs/paper-scale] [--llms llama-3.2-1b llama-3.2-3b gpt2-xl]

Every model is the real architecture with random weights (:mod:`bamco_fast.models.random_weights`):
BiomedCLIP (ViT-B/16 at 224 px + PubMedBERT-base at context 256), Llama 3.2 1B and 3B, GPT-2 XL, with
tokenizers trained on the datasets' text and the real special-token conventions. Only the model
locations (``model.tower``, ``model.llm``) and the amount of work (steps, records) differ from the
presets; everything else is the preset's (K = 36 intra-class images of 84 x 84, width 12, LoRA r=64,
alpha=16, max length 256).

What runs, each as ``python -m ...`` with its wall time and exit status recorded:

* pretraining on Slake and VQA-RAD (``--preset slake|vqa-rad``): 3 steps of batch 4, stopped after 2 and
  continued with ``--resume RUN`` alone, then ``--eval-only`` (the matching table on a few records);
* VQA on Slake with each LLM (``--preset slake-<llm>``, the Slake knowledge space above): 4 steps of batch
  4 (1 for 3B), stopped after 2 and continued with ``--resume``, validation, evaluation of 8 questions;
  ``--eval-only`` again (the saved model must give the same predictions), ``python -m
  bamco_fast.inference merge``, ``python -m bamco_fast.predict`` on a real image with the run and with
  the merged copy (the same answer);
* a probe of each run in a fresh process (:mod:`paper_scale_probe`): parameters, the LoRA count from the
  shapes, peak memory of a step at batch 1, 2, 4 and its slope, the step's time split.

The report (``WORK/paper_scale.md`` and ``.json``) adds the sizes on disk and the GPU memory at each preset's
batch derived from the measured figures (:func:`derive_gpu`), with the batch that fits 24 GB and 80 GB.

Disk: the random weights, the merged copies and the checkpoints of all three LLMs take about 55 GiB. By
default each LLM's weights, merged copy and checkpoints are deleted as soon as its run is measured (its
sizes are in the report first), so the rehearsal needs about as much free disk as its largest LLM (about
31 GiB for 3B in fp32; 35 GiB with the check's margin); ``--keep`` keeps everything. The free space is
checked before anything starts (:func:`disk_needed_gib`): too little is one line and exit 2. Each run's
measurements are kept in ``WORK/measured-RUN.json``; running the command again skips the runs already
measured and starts a run that was not measured (interrupted, failed) afresh.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
_SHARED = Path(os.environ.get("BAMCO_FAST_SHARED_DATA", REPO.parent / "shared" / "data"))
LLMS = ("llama-3.2-1b", "llama-3.2-3b", "gpt2-xl")
PRESET_BATCH = {"pretrain": 48, "vqa": 32}
QUIET = ["--set", "loop.progress=false", "--set", "loop.tensorboard=false", "--set", "loop.num_threads=0"]

# Sizes on disk in GiB, measured by this rehearsal with fp32 weights (2026-12-02): the random-weight folder
# (the merged copy is the same size), and a VQA run folder with its checkpoints (hard links counted twice)
# and without them (the model folder, what is kept). BASE: BiomedCLIP's folder, both pretraining runs and
# the knowledge files.
WEIGHTS_GIB = {"llama-3.2-1b": 4.7, "llama-3.2-3b": 12.1, "gpt2-xl": 5.9}
RUN_GIB = {"llama-3.2-1b": 2.1, "llama-3.2-3b": 4.5, "gpt2-xl": 3.2}
KEPT_GIB = {"llama-3.2-1b": 0.25, "llama-3.2-3b": 0.5, "gpt2-xl": 0.35}
BASE_GIB = 1.2


class Rehearsal:
    """Runs commands, records each one's status and wall time."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.log: list[dict] = []
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}

    def run(
        self, label: str, args: list[str], *, expect: int = 0, timeout: int = 7200
    ) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {label}: {' '.join(args)}", flush=True)
        proc = subprocess.run(
            [sys.executable, *args], capture_output=True, text=True, env=self.env, cwd=REPO, timeout=timeout
        )
        seconds = time.perf_counter() - start
        record = {"label": label, "code": proc.returncode, "seconds": round(seconds, 1), "command": args}
        self.log.append(record)
        with open(self.work / "commands.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        status = "ok" if proc.returncode == expect else f"FAILED (exit {proc.returncode})"
        print(f"    {status} in {seconds:.0f} s", flush=True)
        if proc.returncode != expect:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", flush=True)
            raise SystemExit(f"{label} failed")
        return proc


def _sets(*items: str) -> list[str]:
    return [a for s in items for a in ("--set", s)]


TEXTS = [
    f"slake={_SHARED / 'slake'}",
    f"vqa-rad={_SHARED / 'vqa_rad' / 'hf_flaviagiammarino_order'}",
    f"pathvqa={_SHARED / 'pathvqa'}",
]


def build_model(r: Rehearsal, name: str, dtype: str = "float32") -> Path:
    """The random-weight folder of ``name`` (reused when it exists)."""
    folder = r.work / "models" / name
    if not (folder / ("open_clip_config.json" if name == "biomedclip" else "config.json")).is_file():
        args = ["-m", "bamco_fast.models.random_weights", name, "--out", str(folder), "--texts", *TEXTS]
        r.run(f"build {name}", args + ([] if name == "biomedclip" else ["--dtype", dtype]))
    return folder


def disk_needed_gib(llms: list[str], dtype3b: str, *, keep: bool) -> float:
    """Free disk the rehearsal of ``llms`` needs, from the sizes it measured (GiB, 10 % and 1 GiB spare).

    Each LLM at its peak holds its random weights, its merged copy and its run with checkpoints; with
    ``keep`` they add up, without it only the largest counts plus what is kept of the others."""
    peak = {}
    for llm in llms:
        scale = 0.5 if llm == "llama-3.2-3b" and dtype3b == "bfloat16" else 1.0
        peak[llm] = 2 * WEIGHTS_GIB[llm] * scale + RUN_GIB[llm]
    if keep:
        need = sum(peak.values())
    else:
        need = max(peak.values(), default=0.0) + sum(KEPT_GIB[llm] for llm in llms)
    return (BASE_GIB + need) * 1.1 + 1.0


def free_gib(path: Path) -> float:
    """Free space of the disk ``path`` is (or will be) on."""
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return shutil.disk_usage(path).free / 2**30


def release_llm(work: Path, llm: str, run: Path) -> None:
    """Delete what the report no longer needs of a measured LLM run: weights, merged copy, checkpoints."""
    for folder in (work / "models" / llm, work / f"merged-{llm}", run / "checkpoints"):
        shutil.rmtree(folder, ignore_errors=True)


def pretrain(r: Rehearsal, dataset: str, towers: Path) -> Path:
    run = r.work / f"pretrain-{dataset}"
    sets = [
        f"model.tower=local-dir:{towers}",
        "loop.batch_size=4",
        "loop.max_steps=3",
        "loop.log_every_steps=1",
    ]
    sets += ["data.max_train_records=96", "data.max_val_records=32", "eval.batch_size=16"]
    if dataset == "slake":
        sets += [f"data.train_knowledge={r.work / 'knowledge' / 'slake-train.json'}"]
        sets += [f"data.val_knowledge={r.work / 'knowledge' / 'slake-validate.json'}"]
    base = ["-m", "bamco_fast.train", "pretrain", "--preset", dataset, "--out", str(run), *QUIET]
    r.run(f"pretrain {dataset}: 2 steps", [*base, *_sets(*sets, "loop.stop_at_step=2")])
    r.run(f"pretrain {dataset}: --resume", ["-m", "bamco_fast.train", "pretrain", "--resume", str(run)])
    r.run(f"pretrain {dataset}: --eval-only", ["-m", "bamco_fast.train", "pretrain", "--eval-only", str(run)])
    return run


def vqa(r: Rehearsal, llm: str, folder: Path, space: Path, image: Path) -> Path:
    run = r.work / f"vqa-slake-{llm}"
    batch = 1 if llm == "llama-3.2-3b" else 4
    sets = [f"model.llm={folder}", f"loop.batch_size={batch}", "loop.epochs=1", "loop.log_every_steps=1"]
    sets += [f"data.max_train={4 * batch}", "data.max_validate=8", "data.max_evaluate=8", "eval.batch_size=4"]
    sets += ["eval.n_boot=100", "loop.precision=fp32"]
    base = ["-m", "bamco_fast.train", "vqa", "--preset", f"slake-{llm}", "--knowledge-space", str(space)]
    r.run(f"vqa {llm}: 2 steps", [*base, "--out", str(run), *QUIET, *_sets(*sets, "loop.stop_at_step=2")])
    r.run(f"vqa {llm}: --resume", ["-m", "bamco_fast.train", "vqa", "--resume", str(run)])
    first = (run / "predictions_validate.jsonl").read_text()
    r.run(f"vqa {llm}: --eval-only", ["-m", "bamco_fast.train", "vqa", "--eval-only", str(run)])
    if (run / "predictions_validate.jsonl").read_text() != first:
        raise SystemExit(f"vqa {llm}: the saved model does not reproduce its predictions")
    merged = r.work / f"merged-{llm}"
    shutil.rmtree(merged, ignore_errors=True)
    r.run(
        f"vqa {llm}: merge", ["-m", "bamco_fast.inference", "merge", "--run", str(run), "--out", str(merged)]
    )
    ask = [
        "-m",
        "bamco_fast.predict",
        "--run",
        str(run),
        "--image",
        str(image),
        "--question",
        "Which organ is shown?",
        "--json",
    ]
    plain = json.loads(r.run(f"vqa {llm}: predict", ask).stdout.strip().splitlines()[-1])
    again = json.loads(
        r.run(f"vqa {llm}: predict merged", [*ask, "--model", str(merged)]).stdout.strip().splitlines()[-1]
    )
    if plain["prediction"] != again["prediction"]:
        raise SystemExit(
            f"vqa {llm}: the merged copy answers {again['prediction']!r}, the run {plain['prediction']!r}"
        )
    return run


def measured(r: Rehearsal, kind: str, run: Path) -> dict:
    """:func:`measure` once per run, kept in ``WORK/measured-RUN.json`` (written when complete)."""
    path = r.work / f"measured-{run.name}.json"
    if not path.is_file():
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(measure(r, kind, run), indent=1) + "\n")
        os.replace(tmp, path)
    return json.loads(path.read_text())


def fresh(run: Path, r: Rehearsal) -> bool:
    """Whether ``run`` still has to run; a run folder left without measurements is started again."""
    if (r.work / f"measured-{run.name}.json").is_file():
        return False
    shutil.rmtree(run, ignore_errors=True)
    return True


def probe(r: Rehearsal, kind: str, run: Path) -> dict:
    out = r.work / f"probe-{run.name}.json"
    if not out.is_file():
        r.run(f"probe {run.name}", [str(HERE / "paper_scale_probe.py"), kind, str(run), "--out", str(out)])
    return json.loads(out.read_text())


def folder_gib(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**30


def derive_gpu(p: dict, kind: str, *, weight_bytes_per_param: int) -> dict:
    """GPU memory at the preset's batch, derived from the measured figures (bf16 autocast, fp32 weights):
    weights (all parameters at ``weight_bytes_per_param``), AdamW moments and gradients of the trainable
    parameters (12 bytes each), plus the measured per-sample slope of a CPU fp32 step times the batch (an
    upper bound: autocast keeps most activations in bf16), plus 1 GiB of CUDA context."""
    static = (p["parameters"] * weight_bytes_per_param + p["trainable"] * 12) / 2**30 + 1.0
    slope = p["slope_mib_per_sample"] / 1024
    batch = PRESET_BATCH[kind]
    # string keys: the figures go through JSON (measured-RUN.json, paper_scale.json)
    fits = {str(card): max(0, int((card * 0.9 - static) / slope)) if slope > 0 else 0 for card in (24, 80)}
    return {
        "static_gib": static,
        "slope_gib": slope,
        "at_preset_gib": static + slope * batch,
        "batch_fits": fits,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "paper-scale")
    parser.add_argument("--llms", nargs="+", choices=LLMS, default=list(LLMS))
    parser.add_argument("--dtype-3b", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep every LLM's random weights, merged copy and checkpoints (about 55 GiB for all three)",
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="rebuild the report from WORK/paper_scale.json (the GPU figures derived again)",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        source = args.work / "paper_scale.json"
        if not source.is_file():
            print(
                f"paper_scale: --work: expected a finished rehearsal with {source}, found none",
                file=sys.stderr,
            )
            return 2
        old = json.loads(source.read_text())
        for name, p in old["runs"].items():
            p["gpu"] = derive_gpu(
                p, "vqa" if name.startswith("vqa") else "pretrain", weight_bytes_per_param=4
            )
        return write_report(args.work, old)
    todo = [llm for llm in args.llms if not (args.work / f"measured-vqa-slake-{llm}.json").is_file()]
    need, free = disk_needed_gib(todo, args.dtype_3b, keep=args.keep), free_gib(args.work)
    if free < need:
        print(
            f"paper_scale: --work {args.work}: needs about {need:.0f} GiB free on its disk for "
            f"{' '.join(todo) or 'the pretraining runs'}{' with --keep' if args.keep else ''}, found "
            f"{free:.1f} GiB (free some, point --work at a larger disk, or rehearse fewer --llms)",
            file=sys.stderr,
        )
        return 2
    if not (_SHARED / "slake").is_dir():
        print(f"skipped: needs the shared datasets under {_SHARED} (set BAMCO_FAST_SHARED_DATA)")
        return 0
    r = Rehearsal(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    towers = build_model(r, "biomedclip")
    for split in ("train", "validate"):
        target = args.work / "knowledge" / f"slake-{split}.json"
        if not target.is_file():
            kb = ["--kb", f"slake-kg:{_SHARED / 'slake' / 'KG'}", "--out", str(target), "--no-progress"]
            args_kb = ["--dataset", "slake", "--root", str(_SHARED / "slake"), "--split", split, *kb]
            r.run(f"knowledge slake {split}", ["-m", "bamco_fast.knowledge", "build", *args_kb])
    runs = {}
    for dataset in ("slake", "vqa-rad"):
        run = args.work / f"pretrain-{dataset}"
        if fresh(run, r):
            pretrain(r, dataset, towers)
        runs[run.name] = measured(r, "pretrain", run)
    image = _SHARED / "slake" / "imgs" / "xmlab1" / "source.jpg"
    for llm in args.llms:
        run = args.work / f"vqa-slake-{llm}"
        if fresh(run, r):
            folder = build_model(r, llm, args.dtype_3b if llm == "llama-3.2-3b" else "float32")
            vqa(r, llm, folder, args.work / "pretrain-slake", image)
        runs[run.name] = measured(r, "vqa", run)
        if not args.keep:
            release_llm(args.work, llm, run)
    log = args.work / "commands.jsonl"
    commands = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else r.log
    return write_report(args.work, {"commands": commands, "runs": runs})


def measure(r: Rehearsal, kind: str, run: Path) -> dict:
    """The probe's figures of one run plus its sizes on disk and the derived GPU memory."""
    p = probe(r, kind, run)
    p["checkpoint_gib"] = (run / "checkpoints" / "best.pt").stat().st_size / 2**30
    p["run_gib"] = folder_gib(run)
    # what a user keeps: the trained parts of the knowledge space, or the VQA run's model folder (adapters,
    # projectors, tokenizer; never the frozen towers or the LLM)
    p["model_gib"] = folder_gib(run / ("model" if kind == "vqa" else "knowledge_space"))
    if kind == "vqa":
        p["merged_gib"] = folder_gib(r.work / f"merged-{run.name.removeprefix('vqa-slake-')}")
    p["gpu"] = derive_gpu(p, kind, weight_bytes_per_param=4)
    return p


def write_report(work: Path, report: dict) -> int:
    (work / "paper_scale.json").write_text(json.dumps(report, indent=1) + "\n")
    table = format_report(report)
    (work / "paper_scale.md").write_text(table + "\n")
    print(table)
    return 0


def format_report(report: dict) -> str:
    """Markdown tables: measured CPU figures per run, then the derived GPU memory and batch sizes."""
    head = "| run | parameters | trainable | LoRA (shapes / trained) | peak rise b=1 / 2 / 4 (MiB) | slope MiB/sample | step b=4: data / towers / intra / LLM / loss / optimiser (s) | checkpoint GiB | model folder GiB | merged GiB |"
    lines = [head, "|" + "---|" * 10]
    for name, p in report["runs"].items():
        peaks = " / ".join(
            f"{p['peak_rise_mib'][str(b)] if str(b) in p['peak_rise_mib'] else p['peak_rise_mib'][b]:.0f}"
            for b in (1, 2, 4)
        )
        s = p["split_b4"]
        phases = [
            s.get(k, 0.0)
            for k in ("data", "towers", "intra" if "intra" in s else "encoder", "llm", "loss", "optimiser")
        ]
        lora = (
            f"{p['lora_from_shapes'] / 1e6:.2f} M / {p['lora_trainable'] / 1e6:.2f} M"
            if "lora_from_shapes" in p
            else "-"
        )
        merged = f"{p['merged_gib']:.2f}" if "merged_gib" in p else "-"
        lines.append(
            f"| {name} | {p['parameters'] / 1e6:,.1f} M | {p['trainable'] / 1e6:,.2f} M | {lora} | {peaks} | "
            f"{p['slope_mib_per_sample']:.0f} | {' / '.join(f'{t:.2f}' for t in phases)} | {p['checkpoint_gib']:.3f} | "
            f"{p['model_gib']:.3f} | {merged} |"
        )
    lines += [
        "",
        "| run | preset batch | derived GPU memory at the preset batch | batch for 24 GB | batch for 80 GB |",
        "|---|---|---|---|---|",
    ]
    for name, p in report["runs"].items():
        g, kind = p["gpu"], "vqa" if name.startswith("vqa") else "pretrain"
        lines.append(
            f"| {name} | {PRESET_BATCH[kind]} | {g['at_preset_gib']:.1f} GiB ({g['static_gib']:.1f} static + "
            f"{g['slope_gib'] * 1024:.0f} MiB/sample) | {g['batch_fits']['24']} | {g['batch_fits']['80']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
