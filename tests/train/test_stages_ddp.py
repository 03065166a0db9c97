"""Both stages under torchrun: 2 gloo processes on CPU run the packaged demo's pretraining and VQA end to end.

Rank 0 alone writes the run (one metrics line per step, one model), the knowledge space it saves loads, and
the VQA stage trained on it answers every test question.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bamco_fast.models.knowledge_space import KnowledgeSpace

pytestmark = pytest.mark.usefixtures("one_thread")


def _torchrun(args: list[str], timeout: int = 420) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "bamco_fast.train", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def _steps(metrics_file) -> list[tuple[str, int]]:
    rows = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    return [(row["split"], row["step"]) for row in rows]


def test_pretrain_and_vqa_under_torchrun(tmp_path):
    pre = tmp_path / "pretrain"
    proc = _torchrun(
        ["pretrain", "--out", str(pre), "--set", "loop.max_steps=3", "--set", "loop.progress=false"]
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "2 process(es)" in proc.stdout
    steps = _steps(pre / "metrics.jsonl")
    assert len(steps) == len(set(steps)) and ("val", 3) in steps  # written once, by rank 0
    ks = KnowledgeSpace.load(pre / "knowledge_space")
    assert ks.num_classes == 120

    vqa = tmp_path / "vqa"
    args = ["vqa", "--knowledge-space", str(pre), "--set", f"out={vqa}"]
    proc = _torchrun([*args, "--set", "loop.max_steps=2", "--set", "loop.progress=false"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = _steps(vqa / "metrics.jsonl")
    assert len(steps) == len(set(steps))
    predictions = (vqa / "predictions_test.jsonl").read_text().splitlines()
    assert len(predictions) == 76 and len({json.loads(p)["qid"] for p in predictions}) == 76
    report = json.loads((vqa / "report_test.json").read_text())
    assert report["metrics"]["overall_exact"]["n"] == 76
