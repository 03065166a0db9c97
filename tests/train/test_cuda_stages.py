"""Both stages on a CUDA card: the packaged demo under bf16 autocast, the contrastive loss on Triton.

Skipped without a GPU (the ``cuda`` marker). ``benchmarks/gpu_check.sh`` runs them on a borrowed card.
"""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def pretrain_run(tmp_path_factory):
    from bamco_fast.train.cli import main

    out = tmp_path_factory.mktemp("cuda") / "pretrain"
    sets = ["loop.device=cuda", "loop.precision=bf16", "loop.max_steps=12", "loop.progress=false"]
    sets += ["loop.tensorboard=false", "loop.num_threads=0"]
    code = main(["pretrain", "--out", str(out), *(a for s in sets for a in ("--set", s))])
    assert code == 0
    return out


def test_pretraining_runs_bf16_with_the_triton_loss(pretrain_run, capsys):
    from bamco_fast.models.knowledge_space import KnowledgeSpace
    from bamco_fast.train.cli import main

    rows = [json.loads(line) for line in (pretrain_run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if r["split"] == "train"]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    space = KnowledgeSpace.load(pretrain_run / "knowledge_space", device="cuda")
    emb = space.encode_text(["liver", "lung"])
    assert emb.device.type == "cuda" and torch.isfinite(emb).all()
    out = pretrain_run.parent / "again"
    sets = ["loop.device=cuda", "loop.precision=bf16", "loop.max_steps=2", "loop.progress=false"]
    assert main(["pretrain", "--out", str(out), *(a for s in sets for a in ("--set", s))]) == 0
    printed = capsys.readouterr().out
    assert "contrastive loss backend: triton (cuda, bfloat16)" in printed


def test_vqa_trains_bf16_and_answers_on_cuda(pretrain_run, tmp_path, capsys):
    from bamco_fast.predict import main as predict_main
    from bamco_fast.train.cli import main

    run = tmp_path / "vqa"
    sets = [f"out={run}", "loop.device=cuda", "loop.precision=bf16", "loop.epochs=2", "loop.progress=false"]
    sets += ["loop.tensorboard=false", "loop.num_threads=0"]
    args = ["vqa", "--knowledge-space", str(pretrain_run), *(a for s in sets for a in ("--set", s))]
    assert main(args) == 0
    info = json.loads((run / "run.json").read_text())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in rows if r["split"] == "val"]
    assert min(val) < info["val_loss_before_training"]
    report = json.loads((run / "report_test.json").read_text())
    assert report["metrics"]["overall_exact"]["n"] > 0
    capsys.readouterr()
    from bamco_fast.demo_data import demo_paths

    image = sorted(demo_paths().images.iterdir())[0]
    args = ["--run", str(run), "--image", str(image), "--question", "is there a fracture?", "--json"]
    assert predict_main([*args, "--device", "cuda"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert isinstance(row["prediction"], str) and row["retrieved_entity"]
