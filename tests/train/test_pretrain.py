"""The pretraining stage end to end on a slice of the packaged demo data, with tiny towers on CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from pretrain_demo import demo_slice, pretrain_sets

from bamco_fast.train.cli import main as train_main
from bamco_fast.train.core.checkpoint import load_checkpoint
from bamco_fast.train.pretrain.task import alignment_loss

RECORDS_TRAIN, RECORDS_VAL = 16, 24


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict[str, Path]:
    return demo_slice(tmp_path_factory.mktemp("pretrain_data"), RECORDS_TRAIN, RECORDS_VAL)


def pretrain_main(args: list[str]) -> int:
    return train_main(["pretrain", *args])


def _args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["--out", str(out), *pretrain_sets(data, "loop.epochs=2", "optim.warmup_steps=2"), *extra]


def test_cli_trains_selects_saves_and_prints_the_matching_table(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert pretrain_main(_args(data, run, "--alignment")) == 0
    printed = capsys.readouterr().out
    assert "untrained" in printed and "alignment" in printed and "BaMCo" in printed
    from bamco_fast.ops.bamco_loss import select_backend

    expected = select_backend(torch.zeros(2, 3, 4), None).name  # the C++ extension where it is built
    assert printed.count("contrastive loss backend:") == 1  # said once; the alignment run has none
    assert f"contrastive loss backend: {expected} (cpu, float32)" in printed
    for name in (
        "config.json",
        "config.yaml",
        "metrics.jsonl",
        "curves.png",
        "matching.txt",
        "matching.json",
    ):
        assert (run / name).is_file(), name
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {r["split"] for r in rows} == {"train", "val"}
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in rows if r["split"] == "train")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    val_rows = [r for r in rows if r["split"] == "val"]
    assert best["step"] == max(val_rows, key=lambda r: r["match/mean"])["step"]  # chosen on validation

    from bamco_fast.models.knowledge_space import KnowledgeSpace

    space = KnowledgeSpace.load(run / "knowledge_space")
    assert space.num_classes == len({r["head_entity"].lower() for r in json.loads(data["train"].read_text())})
    assert space.encode_text(["liver"]).shape == (1, 32)
    results = json.loads((run / "matching.json").read_text())["results"]
    assert set(results) == {"untrained", "alignment", "BaMCo"}
    assert "intra->entity/top1" in results["BaMCo"] and "intra->entity/top1" not in results["untrained"]

    assert pretrain_main(["--eval-only", str(run), "--set", "eval.protocol=in-batch"]) == 0
    assert "protocol 'in-batch'" in capsys.readouterr().out


def test_stop_resume_matches_uninterrupted_run(data, tmp_path):
    assert pretrain_main(_args(data, tmp_path / "ref", "--set", "loop.epochs=1")) == 0
    assert (
        pretrain_main(_args(data, tmp_path / "run", "--set", "loop.epochs=1", "--set", "loop.stop_at_step=2"))
        == 0
    )
    assert not (tmp_path / "run" / "knowledge_space").exists()
    assert load_checkpoint(tmp_path / "run")["step"] == 2
    moved = tmp_path / "elsewhere" / "moved-run"
    moved.parent.mkdir()
    (tmp_path / "run").rename(moved)  # the run folder is moved before it is resumed
    assert pretrain_main(["--resume", str(moved)]) == 0  # the saved configuration, nothing else
    assert json.loads((moved / "config.json").read_text())["out"] == "."  # paths inside the run are relative
    ref = load_checkpoint(tmp_path / "ref")["model"]
    resumed = load_checkpoint(moved)["model"]
    assert ref.keys() == resumed.keys()
    for key in ref:
        assert torch.equal(ref[key], resumed[key]), key


def test_bad_input_gives_clear_errors(data, tmp_path, capsys):
    assert pretrain_main(_args(data, tmp_path / "a", "--set", "loop.epoch=1")) == 2
    assert "unknown config key 'loop.epoch'" in capsys.readouterr().err
    assert pretrain_main(_args(data, tmp_path / "b", "--set", "data.augment_reference=true")) == 2
    assert "augment_reference=false" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    records = json.loads(data["train"].read_text())
    bad.write_text(json.dumps([{**r, "image": f"missing_{i}.jpg"} for i, r in enumerate(records[:7])]))
    assert pretrain_main(_args(data, tmp_path / "c", "--set", f"data.train_knowledge={bad}")) == 2
    err = capsys.readouterr().err
    assert "names images that do not exist" in err and "7: 'missing_0.jpg'" in err
    assert pretrain_main(_args(data, tmp_path / "d", "--set", "loop.stop_at_step=1")) == 0
    assert pretrain_main(["--resume", str(tmp_path / "d"), "--set", "optim.lr=0.5"]) == 2
    assert "--set optim.lr would change the run's numerics" in capsys.readouterr().err
    assert pretrain_main(_args(data, tmp_path / "d")) == 2  # a fresh run never overwrites checkpoints
    assert "already holds a run" in capsys.readouterr().err


def test_alignment_loss_is_symmetric_infonce():
    gen = torch.Generator().manual_seed(0)
    a, b = (F.normalize(torch.randn(5, 8, generator=gen), dim=-1) for _ in range(2))
    logits = a @ b.T / 0.1
    target = torch.arange(5)
    expected = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    torch.testing.assert_close(alignment_loss([a, b], 0.1, gather=False), expected)
