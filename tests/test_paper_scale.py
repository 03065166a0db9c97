"""The paper-scale rehearsal's own logic, without running it: disk check, report rebuilt from JSON.

The rehearsal itself (``python benchmarks/paper_scale.py``, about 47 minutes and tens of GiB) is not run
here; what is tested is what decides whether it starts and what it reports.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import paper_scale
from paper_scale import LLMS, derive_gpu, disk_needed_gib


def test_disk_need_counts_the_largest_llm_unless_everything_is_kept():
    each = {llm: disk_needed_gib([llm], "float32", keep=False) for llm in LLMS}
    released = disk_needed_gib(list(LLMS), "float32", keep=False)
    kept = disk_needed_gib(list(LLMS), "float32", keep=True)
    assert max(each.values()) < released < max(each.values()) + 2
    assert kept > released + 20
    assert disk_needed_gib(["llama-3.2-3b"], "bfloat16", keep=False) < each["llama-3.2-3b"] - 10
    assert disk_needed_gib([], "float32", keep=False) < 3


def test_too_little_disk_is_one_line_and_exit_2_before_anything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paper_scale, "free_gib", lambda path: 4.0)
    work = tmp_path / "work"
    code = paper_scale.main(["--work", str(work), "--llms", "llama-3.2-3b"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1
    assert "--work" in err and "llama-3.2-3b" in err and "found 4.0 GiB" in err
    assert not work.exists()


def test_measured_llms_are_not_counted_again(tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(paper_scale, "free_gib", lambda path: 0.0)
    monkeypatch.setattr(
        paper_scale, "disk_needed_gib", lambda llms, dtype, keep: seen.append(list(llms)) or 1.0
    )
    (tmp_path / "measured-vqa-slake-llama-3.2-3b.json").write_text("{}")
    assert paper_scale.main(["--work", str(tmp_path)]) == 2
    assert seen == [["llama-3.2-1b", "gpt2-xl"]]


def test_report_only_needs_a_finished_rehearsal(tmp_path, capsys):
    assert paper_scale.main(["--work", str(tmp_path / "none"), "--report-only"]) == 2
    assert "paper_scale.json" in capsys.readouterr().err
    assert not (tmp_path / "none").exists()


def _probe(parameters: float, trainable: float, slope: float) -> dict:
    return {
        "parameters": parameters,
        "trainable": trainable,
        "peak_rise_mib": {"1": slope, "2": 2 * slope, "4": 4 * slope},
        "slope_mib_per_sample": slope,
        "split_b4": {"data": 0.1, "towers": 0.2, "intra": 0.3, "llm": 0.4, "loss": 0.5, "optimiser": 0.6},
        "checkpoint_gib": 0.5,
        "run_gib": 1.0,
        "model_gib": 0.25,
    }


def test_report_is_rebuilt_from_json_with_the_gpu_figures_derived_again(tmp_path):
    vqa = {**_probe(1e9, 1e7, 1024.0), "merged_gib": 4.0, "lora_from_shapes": 5e6, "lora_trainable": 5e6}
    runs = {"pretrain-slake": _probe(2e8, 4e6, 128.0), "vqa-slake-llama-3.2-1b": vqa}
    (tmp_path / "paper_scale.json").write_text(json.dumps({"commands": [], "runs": runs}))
    assert paper_scale.main(["--work", str(tmp_path), "--report-only"]) == 0
    report = json.loads((tmp_path / "paper_scale.json").read_text())
    table = (tmp_path / "paper_scale.md").read_text()
    # 1e9 fp32 weights + 12 bytes per trainable parameter + 1 GiB context = 4.84 GiB static, 1 GiB/sample
    static = (4e9 + 12e7) / 2**30 + 1.0
    gpu = report["runs"]["vqa-slake-llama-3.2-1b"]["gpu"]
    assert gpu["static_gib"] == pytest.approx(static)
    assert gpu["at_preset_gib"] == pytest.approx(static + 32)
    assert gpu["batch_fits"] == {"24": int(24 * 0.9 - static), "80": int(80 * 0.9 - static)}
    assert f"| {int(24 * 0.9 - static)} | {int(80 * 0.9 - static)} |" in table
    assert "5.00 M / 5.00 M" in table and "| 4.00 |" in table
    assert derive_gpu(runs["pretrain-slake"], "pretrain", weight_bytes_per_param=4)["batch_fits"]["80"] > 400
