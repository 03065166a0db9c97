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
"""

from __future__ import annotations

import argparse
import json
import os
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
        self.log.append(
            {"label": label, "code": proc.returncode, "seconds": round(seconds, 1), "command": args}
        )
        status = "ok" if proc.returncode == expect else f"FAILED (exit {proc.returncode})"
        print(f"    {status} in {seconds:.0f} s", flush=True)
        if proc.returncode != expect:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n", flush=True)
            raise SystemExit(f"{label} failed")
        return proc


def _sets(*items: str) -> list[str]:
    return [a for s in items for a in ("--set", s)]


def build_models(r: Rehearsal, llms: list[str], dtype3b: str) -> dict[str, Path]:
    """The random-weight folders (reused when they exist)."""
    texts = [
        f"slake={_SHARED / 'slake'}",
        f"vqa-rad={_SHARED / 'vqa_rad' / 'hf_flaviagiammarino_order'}",
        f"pathvqa={_SHARED / 'pathvqa'}",
    ]
    folders = {}
    for name in ("biomedclip", *llms):
        folder = r.work / "models" / name
        dtype = dtype3b if name == "llama-3.2-3b" else "float32"
        if not (folder / ("open_clip_config.json" if name == "biomedclip" else "config.json")).is_file():
            args = ["-m", "bamco_fast.models.random_weights", name, "--out", str(folder), "--texts", *texts]
            r.run(f"build {name}", args + ([] if name == "biomedclip" else ["--dtype", dtype]))
        folders[name] = folder
    return folders


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
    if not merged.exists():
        r.run(
            f"vqa {llm}: merge",
            ["-m", "bamco_fast.inference", "merge", "--run", str(run), "--out", str(merged)],
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
    fits = {card: max(0, int((card * 0.9 - static) / slope)) if slope > 0 else 0 for card in (24, 80)}
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
        "--report-only",
        action="store_true",
        help="rebuild the report from the runs and probes already in WORK",
    )
    args = parser.parse_args(argv)
    if args.report_only:
        old = json.loads((args.work / "paper_scale.json").read_text())
        r = Rehearsal(args.work)
        kinds = {name: "vqa" if name.startswith("vqa") else "pretrain" for name in old["runs"]}
        runs = {name: measure(r, kind, args.work / name) for name, kind in kinds.items()}
        return write_report(args.work, {"commands": old["commands"], "runs": runs})
    if not (_SHARED / "slake").is_dir():
        print(f"skipped: needs the shared datasets under {_SHARED} (set BAMCO_FAST_SHARED_DATA)")
        return 0
    r = Rehearsal(args.work)
    args.work.mkdir(parents=True, exist_ok=True)
    models = build_models(r, args.llms, args.dtype_3b)
    for split in ("train", "validate"):
        target = args.work / "knowledge" / f"slake-{split}.json"
        if not target.is_file():
            kb = ["--kb", f"slake-kg:{_SHARED / 'slake' / 'KG'}", "--out", str(target), "--no-progress"]
            r.run(
                f"knowledge slake {split}",
                [
                    "-m",
                    "bamco_fast.knowledge",
                    "build",
                    "--dataset",
                    "slake",
                    "--root",
                    str(_SHARED / "slake"),
                    "--split",
                    split,
                    *kb,
                ],
            )
    runs = {f"pretrain-{d}": ("pretrain", pretrain(r, d, models["biomedclip"])) for d in ("slake", "vqa-rad")}
    image = _SHARED / "slake" / "imgs" / "xmlab1" / "source.jpg"
    for llm in args.llms:
        runs[f"vqa-slake-{llm}"] = ("vqa", vqa(r, llm, models[llm], runs["pretrain-slake"][1], image))
    report = {"commands": r.log, "runs": {name: measure(r, kind, run) for name, (kind, run) in runs.items()}}
    return write_report(args.work, report)


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
            f"{g['slope_gib'] * 1024:.0f} MiB/sample) | {g['batch_fits'][24]} | {g['batch_fits'][80]} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
