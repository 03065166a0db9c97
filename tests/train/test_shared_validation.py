"""Both stages hold out the same validation images: pretraining with ``data.vqa_root`` validates on the
knowledge records of the images the VQA stage selects on, and the VQA stage says when its knowledge space
was trained on records of its held-out questions. Real data from ``../shared/data``."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vqa_helpers import shared_data, trained_slake_run

from bamco_fast.train.pretrain.config import DataConfig, PretrainConfig
from bamco_fast.train.pretrain.data import load_tables, vqa_validation_images

pytestmark = pytest.mark.usefixtures("one_thread")


def _slake_config(**data) -> PretrainConfig:
    base = DataConfig(
        dataset="slake",
        train_knowledge=str(shared_data("bamco_kg", "Slake1.0", "KG_Slake_Train.json")),
        image_root=str(shared_data("slake", "imgs")),
    )
    return PretrainConfig(data=dataclasses.replace(base, **data))


def test_pretraining_validates_on_the_vqa_stage_validation_images():
    from bamco_fast.data.vqa_splits import load_vqa_splits

    config = _slake_config(vqa_root=str(shared_data("slake")))
    held = vqa_validation_images(config)
    # our Slake copy has no test split: the VQA stage evaluates on validate, selects on a carve of train
    splits = load_vqa_splits("slake", shared_data("slake"), eval_split="auto", seed=0)
    assert splits.eval_split == "validate"
    assert held == {r.image_name for r in splits.validate}
    tables = load_tables(config)
    assert set(tables.val.images) <= held and len(tables.val.images) > 0
    assert not set(tables.train.images) & held
    assert "the VQA stage's validation split of slake" in tables.val_source
    own = load_tables(_slake_config())  # the pretraining's own carve: other images
    assert set(own.val.images) != set(tables.val.images)


def test_vqa_rad_uses_the_image_map_names():
    config = PretrainConfig(
        data=DataConfig(
            dataset="vqa-rad",
            train_knowledge=str(shared_data("bamco_kg", "VQARAD", "KG_VQARAD_Train.json")),
            image_map=str(shared_data("bamco_kg", "VQARAD", "image_id_to_synpic.json")),
            image_root=str(shared_data("vqa_rad", "VQA_RAD Image Folder")),
            vqa_root=str(shared_data("vqa_rad", "hf_flaviagiammarino_order")),
        )
    )
    tables = load_tables(config)
    held = vqa_validation_images(config)
    assert all(name.startswith("synpic") for name in held)
    assert 0 < len(tables.val.images) <= len(held) and not set(tables.train.images) & held


def test_bad_vqa_root_is_a_clear_error():
    config = _slake_config(dataset="pathvqa", vqa_root=str(shared_data("pathvqa")))
    with pytest.raises(ValueError, match="data.vqa_root': none of the .* validation images of pathvqa"):
        load_tables(config)
    with pytest.raises(
        ValueError, match="data.vqa_root': needs data.dataset to name the VQA dataset.*'demo'"
    ):
        load_tables(_slake_config(dataset="demo", vqa_root=str(shared_data("slake"))))
    with pytest.raises(FileNotFoundError, match="data.vqa_root': .*nowhere does not exist"):
        load_tables(_slake_config(vqa_root="/nowhere"))


def _pretraining_run(folder: Path, config: PretrainConfig) -> Path:
    """What a pretraining run leaves for the VQA stage: the list of images it held out."""
    from bamco_fast.train.vqa.sources import VALIDATION_IMAGES

    folder.mkdir(parents=True)
    images = sorted(load_tables(config).val.images)
    (folder / VALIDATION_IMAGES).write_text(json.dumps({"images": images}))
    return folder


def test_vqa_stage_counts_records_its_knowledge_space_was_trained_on(tmp_path):
    from bamco_fast.models.intra_bank import build_intra_bank
    from bamco_fast.models.knowledge_space import KnowledgeSpace
    from bamco_fast.train.vqa.prepare import load_splits
    from bamco_fast.train.vqa.sources import records_seen_in_pretraining

    _, config, ks_dir = trained_slake_run()
    splits = load_splits(config)
    held = [(str(r.image_path), r.question) for r in [*splits.validate, *splits.evaluate]]
    space = KnowledgeSpace.load(ks_dir)
    bank = build_intra_bank(
        space, config.data.knowledge, config.data.knowledge_images, exclude_questions=held
    )
    assert bank.left_out_records > 0
    own = _pretraining_run(tmp_path / "own-carve", _slake_config())  # the pretraining carved other images
    seen = records_seen_in_pretraining(bank, own)
    assert 0 < seen <= bank.left_out_records
    shared = _pretraining_run(tmp_path / "shared", _slake_config(vqa_root=str(shared_data("slake"))))
    assert (
        records_seen_in_pretraining(bank, shared / "knowledge_space") == 0
    )  # the run of its knowledge space
    assert records_seen_in_pretraining(bank, tmp_path / "nowhere") is None  # cannot tell
