"""The VQA stage end to end on real data with tiny models: training, selection, evaluation, reload.

Tiny towers (BiomedCLIP-shaped, 64 px), a tiny knowledge space (random heads: the stage only needs a
saved one) and a tiny Llama built in the run folder, on CPU with one thread.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vqa_helpers import (
    run_config,
    shared_data,
    slake_knowledge_space,
    tiny_knowledge_space,
    tiny_run_config,
    trained_slake_run,
    vqa_main,
)

PROTOCOLS = ("closed_exact", "open_exact", "open_recall", "open_containment_bamco", "overall_exact")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def slake_run():
    """One short training run on Slake train, evaluated on Slake validate (our copy has no test)."""
    run, config, _ = trained_slake_run()
    return run, config


def _report(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_slake_training_lowers_validation_loss_and_reports_every_protocol(slake_run):
    run, _ = slake_run
    info = json.loads((run / "run.json").read_text())
    vals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    val_losses = [row["val_loss"] for row in vals if row["split"] == "val"]
    assert len(val_losses) == 2
    assert min(val_losses) < info["val_loss_before_training"] - 0.5
    assert info["splits"]["eval_split"] == "validate"
    report = _report(run / "report_validate.json")
    for name in (*PROTOCOLS, "open_bleu1", "open_rouge1"):
        assert name in report["metrics"] and 0.0 <= report["metrics"][name]["score"] <= 1.0
    assert report["metrics"]["overall_exact"]["n"] == 48
    assert {"majority", "question_prior"} <= set(report["baselines"])
    rows = [json.loads(line) for line in (run / "predictions_validate.jsonl").read_text().splitlines()]
    assert len(rows) == 48
    keys = {
        "qid",
        "question",
        "answer",
        "prediction",
        "answer_type",
        "retrieved_entity",
        "image_name",
        "dataset",
        "split",
    }
    assert keys <= set(rows[0])
    assert all(r["split"] == "validate" and r["dataset"] == "slake" and r["retrieved_entity"] for r in rows)
    assert (run / "curves.png").is_file() and (run / "model" / "vqa.json").is_file()


def test_saved_model_reproduces_predictions_exactly(slake_run):
    run, _config = slake_run
    before = (run / "predictions_validate.jsonl").read_text()
    (run / "predictions_validate.jsonl").unlink()
    assert vqa_main(["--eval-only", str(run)]) == 0  # rebuilt from model/ and the knowledge-space folder
    assert (run / "predictions_validate.jsonl").read_text() == before


def test_vqa_rad_test_report(tmp_path):
    from bamco_fast.knowledge import load_image_map
    from bamco_fast.pretraining.records import load_knowledge_table

    kg = shared_data("bamco_kg", "VQARAD", "KG_VQARAD_Train.json")
    image_map = shared_data("bamco_kg", "VQARAD", "image_id_to_synpic.json")
    images = shared_data("vqa_rad", "VQA_RAD Image Folder")
    classes = load_knowledge_table(kg, images, image_map=load_image_map(image_map)).classes
    ks = tiny_knowledge_space(tmp_path / "ks", tmp_path / "towers", classes)
    config = tiny_run_config(
        tmp_path / "run",
        "vqa-rad-tiny",
        f"model.knowledge_space={ks}",
        f"data.root={shared_data('vqa_rad', 'hf_flaviagiammarino_order')}",
        f"data.knowledge={kg}",
        f"data.knowledge_images={images}",
        f"data.knowledge_image_map={image_map}",
        "data.max_train=96",
        "data.max_validate=32",
        "data.max_evaluate=48",
        "loop.epochs=1",
    )
    assert run_config(config) == 0
    report = _report(tmp_path / "run" / "report_test.json")
    assert report["split"] == "test" and report["dataset"] == "vqa-rad"
    from bamco_fast.models.intra_bank import build_intra_bank
    from bamco_fast.models.knowledge_space import KnowledgeSpace
    from bamco_fast.train.vqa.prepare import load_splits

    splits = load_splits(config)
    tests = [(str(r.image_path), r.question) for r in splits.evaluate]
    bank = build_intra_bank(KnowledgeSpace.load(ks), kg, images, image_map=image_map, exclude_questions=tests)
    assert bank.left_out_records == 0  # test images are asked about in train too; their training records stay
    assert all(name in report["metrics"] for name in PROTOCOLS)
    assert report["n_questions"] == 48


def test_pathvqa_runs_the_plain_towers_configuration(tmp_path, capsys):
    from bamco_fast.models.tiny import build_tiny_towers

    towers = build_tiny_towers(tmp_path / "towers", ["what is present", "pathology"], image_size=64)
    config = tiny_run_config(
        tmp_path / "run",
        "pathvqa-tiny",
        f"data.root={shared_data('pathvqa')}",
        f"model.towers=local-dir:{towers}",
        "data.max_train=96",
        "data.max_validate=32",
        "data.max_evaluate=32",
        "loop.epochs=1",
    )
    assert config.model.plain_towers and not config.model.use_intra_class  # the preset says so
    assert run_config(config) == 0
    out = capsys.readouterr().out
    assert "plain-towers configuration" in out and "carved from it by image" in out
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["plain_towers"] and "bank" not in info
    rows = [
        json.loads(line) for line in (tmp_path / "run" / "predictions_test.jsonl").read_text().splitlines()
    ]
    assert len(rows) == 32 and all(r["retrieved_entity"] is None for r in rows)


def test_leaking_splits_refuse_to_start_naming_the_pair(tmp_path, capsys):
    code = vqa_main(
        [
            "--preset",
            "vqa-rad-tiny",
            "--set",
            f"data.root={shared_data('vqa_rad')}",
            "--set",
            f"out={tmp_path / 'run'}",
            "--set",
            "model.plain_towers=true",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to start" in err and "synpic31955.jpg" in err
    assert not (tmp_path / "run").exists()


def test_missing_knowledge_space_is_a_clear_error(tmp_path):
    config = tiny_run_config(
        tmp_path / "run",
        "slake-tiny",
        f"model.knowledge_space={tmp_path / 'nowhere'}",
        f"data.root={shared_data('slake')}",
    )
    with pytest.raises(
        ValueError, match="model.knowledge_space: expected a pretraining run folder, got .*nowhere"
    ):
        run_config(config)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_entities_knowledge_input_trains_reloads_and_predicts(tmp_path, capsys):
    from bamco_fast.models.entity_input import ENTITIES_FILE
    from bamco_fast.models.knowledge_space import KnowledgeSpace
    from bamco_fast.predict import main as predict_main

    kg, images, ks = slake_knowledge_space(tmp_path)
    classes = KnowledgeSpace.load(ks).class_names
    config = tiny_run_config(
        tmp_path / "run",
        "slake-tiny",
        f"model.knowledge_space={ks}",
        f"data.root={shared_data('slake')}",
        f"data.knowledge={kg}",
        f"data.knowledge_images={images}",
        "model.knowledge_input=entities",
        "model.intra_sampling=class",
        "data.max_train=48",
        "data.max_validate=16",
        "data.max_evaluate=24",
        "loop.epochs=1",
    )
    assert run_config(config) == 0
    assert "knowledge input: entities" in capsys.readouterr().out
    run = tmp_path / "run"
    info = json.loads((run / "run.json").read_text())
    assert info["entities"]["names"] == len(classes)
    assert 0.0 < info["entities"]["train_coverage"] < 1.0  # Slake asks "which organ ..." without naming one
    saved = json.loads((run / "model" / ENTITIES_FILE).read_text())["names"]
    assert saved == list(classes)
    before = (run / "predictions_validate.jsonl").read_text()
    (run / "predictions_validate.jsonl").unlink()
    assert vqa_main(["--eval-only", str(run)]) == 0
    assert (run / "predictions_validate.jsonl").read_text() == before
    image = shared_data("slake", "imgs", "xmlab1", "source.jpg")
    question = "Does the liver look healthy?"
    assert predict_main(["--run", str(run), "--image", str(image), "--question", question, "--json"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert isinstance(row["prediction"], str) and row["retrieved_entity"] in classes
    assert row["question_entities"].lower() == "liver"
    rows = [json.loads(line) for line in before.splitlines()]
    assert all("question_entities" in r for r in rows) and any(r["question_entities"] for r in rows)


def test_entities_with_plain_towers_need_a_knowledge_file(tmp_path, capsys):
    towers = tmp_path / "towers"
    from bamco_fast.models.tiny import build_tiny_towers

    build_tiny_towers(towers, ["what is present"], image_size=64)
    code = vqa_main(
        [
            "--preset",
            "pathvqa-tiny",
            "--set",
            f"data.root={shared_data('pathvqa')}",
            "--set",
            f"model.towers=local-dir:{towers}",
            "--set",
            "model.knowledge_input=entities",
            "--set",
            f"out={tmp_path / 'run'}",
        ]
    )
    assert code == 2
    assert "data.knowledge: model.knowledge_input=entities with plain towers" in capsys.readouterr().err


def test_intra_bank_is_built_from_training_questions_only(slake_run):
    from bamco_fast.models.intra_bank import build_intra_bank
    from bamco_fast.models.knowledge_space import KnowledgeSpace
    from bamco_fast.models.retrieval import decode_images
    from bamco_fast.train.vqa.prepare import load_splits

    run, config = slake_run
    _, _, ks_dir = trained_slake_run()
    info = json.loads((run / "run.json").read_text())
    splits = load_splits(config)
    held = sorted(
        {(str(Path(r.image_path).resolve()), r.question) for r in [*splits.validate, *splits.evaluate]}
    )
    assert info["bank"]["exclude_questions"] == [list(pair) for pair in held]
    space = KnowledgeSpace.load(ks_dir)
    source = {k: info["bank"][k] for k in ("knowledge_file", "image_root", "image_map")}
    full = build_intra_bank(space, **source)
    assert full.left_out_records == 0 and full.left_out_images == 0
    upper = [(image, question.upper() + "  ") for image, question in held]  # case and spaces do not matter
    bank = build_intra_bank(space, **source, exclude_questions=upper)
    # the validation split is carved from Slake train by image: its records, and so its images, go
    assert bank.left_out_records > 0 and bank.left_out_images > 0
    assert bank.images.shape[0] == full.images.shape[0] - bank.left_out_images
    assert sorted([*bank.class_names, *bank.dropped_classes]) == sorted(full.class_names)
    decoded = {bytes(img.numpy()) for img in bank.images}
    size = (bank.images.shape[2], bank.images.shape[3])
    validation = sorted({r.image_path for r in splits.validate})[:5]
    assert all(bytes(img.numpy()) not in decoded for img in decode_images(validation, size))


def test_intra_bank_from_another_knowledge_file_is_a_clear_error(slake_run):
    from bamco_fast.demo_data import demo_paths
    from bamco_fast.models.intra_bank import build_intra_bank
    from bamco_fast.models.knowledge_space import KnowledgeSpace

    _, _, ks_dir = trained_slake_run()
    paths = demo_paths()  # VQA-RAD records: most Slake classes are not among their heads
    with pytest.raises(
        ValueError, match="classes have no record there .*the knowledge file the space was trained on"
    ):
        build_intra_bank(KnowledgeSpace.load(ks_dir), paths.knowledge["train"], paths.images)


def test_resume_alone_continues_a_moved_vqa_run_exactly(tmp_path):
    """``--resume RUN`` alone continues a stopped run after its folder moved, ending where an uninterrupted
    run ends (weights and answers)."""
    import torch

    from bamco_fast.models.tiny import build_tiny_towers
    from bamco_fast.train.core.checkpoint import load_checkpoint

    towers = build_tiny_towers(tmp_path / "towers", ["what is present", "pathology"], image_size=64)
    sets = [
        f"data.root={shared_data('pathvqa')}",
        f"model.towers=local-dir:{towers}",
        "data.max_train=48",
        "data.max_validate=16",
        "data.max_evaluate=16",
        "loop.epochs=2",
        "loop.progress=false",
        "loop.tensorboard=false",
        "eval.n_boot=10",
    ]
    args = [a for s in sets for a in ("--set", s)]
    assert vqa_main(["--preset", "pathvqa-tiny", "--out", str(tmp_path / "ref"), *args]) == 0
    stop = ["--set", "loop.stop_at_step=3"]
    assert vqa_main(["--preset", "pathvqa-tiny", "--out", str(tmp_path / "run"), *args, *stop]) == 0
    assert not (tmp_path / "run" / "model").exists()
    moved = tmp_path / "moved" / "run"
    moved.parent.mkdir()
    (tmp_path / "run").rename(moved)
    assert vqa_main(["--resume", str(moved)]) == 0
    ref, resumed = load_checkpoint(tmp_path / "ref")["model"], load_checkpoint(moved)["model"]
    assert ref.keys() == resumed.keys() and all(torch.equal(ref[k], resumed[k]) for k in ref)
    assert (moved / "predictions_test.jsonl").read_text() == (
        tmp_path / "ref" / "predictions_test.jsonl"
    ).read_text()
