"""Knowledge records -> classes, counts, pools and the string table (synthetic and real data)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers_pretraining import make_knowledge, published_vqa_rad_table, record, shared

from bamco_fast.data.errors import DataFormatError
from bamco_fast.pretraining import KnowledgeTableError, load_knowledge_table


def test_classes_counts_pools_and_strings(tmp_path):
    rows = [
        record("a.jpg", "Liver", tail="Abdomen", relation="location", definition="An organ."),
        record("b.jpg", "Brain", tail="Head", relation="location", definition="Neural organ."),
        record("b.jpg", "liver", tail="Bile", relation="function", definition="An organ."),
        record("c.jpg", "Liver", tail="Abdomen", relation="location", definition="An organ."),
    ]
    table = load_knowledge_table(make_knowledge(tmp_path, rows), tmp_path / "imgs")
    assert table.classes == ("liver", "brain")  # first appearance, lower-cased, Liver == liver
    assert table.class_counts.tolist() == [3, 1]  # records, not images
    assert table.images == ("a.jpg", "b.jpg", "c.jpg")
    assert table.pool(0) == ["a.jpg", "b.jpg", "c.jpg"] and table.pool(1) == ["b.jpg"]
    assert table.pool_sizes.tolist() == [3, 1]
    assert table.record_class.tolist() == [0, 1, 0, 0]
    assert table.texts("entity") == ["liver", "brain", "liver", "liver"]
    assert table.texts("definition") == ["an organ.", "neural organ.", "an organ.", "an organ."]
    assert table.texts("relation") == [
        "location abdomen",
        "location head",
        "function bile",
        "location abdomen",
    ]
    assert len(table.strings) == len(set(table.strings)) == 7


def test_null_definition_uses_name_or_drops(tmp_path):
    rows = [record("a.jpg", "Lung", definition=None), record("b.jpg", "Heart", definition="A pump.")]
    path = make_knowledge(tmp_path, rows)
    table = load_knowledge_table(path, tmp_path / "imgs")
    assert table.texts("definition") == ["lung", "a pump."]
    dropped = load_knowledge_table(path, tmp_path / "imgs", missing_definition="drop")
    assert dropped.classes == ("heart",) and dropped.dropped_no_definition == 1
    cased = load_knowledge_table(path, tmp_path / "imgs", lowercase=False)
    assert cased.classes == ("Lung", "Heart") and cased.texts("definition") == ["Lung", "A pump."]


def test_missing_images_error_lists_count_and_first_few(tmp_path):
    rows = [record(f"img{i}.jpg", "X") for i in range(8)]
    path = make_knowledge(tmp_path, rows)
    for i in range(7):
        (tmp_path / "imgs" / f"img{i}.jpg").unlink()
    with pytest.raises(KnowledgeTableError, match=r"do not exist .*\(7: 'img0.jpg'.* and 2 more\)"):
        load_knowledge_table(path, tmp_path / "imgs")
    assert len(load_knowledge_table(path, tmp_path / "imgs", check_images=False)) == 8


def test_bad_inputs(tmp_path):
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    with pytest.raises(KnowledgeTableError, match="holds no records"):
        load_knowledge_table(empty, tmp_path)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps([{"image": "a.jpg", "head_entity": "X"}]))
    with pytest.raises(DataFormatError, match="record 0: expected fields"):
        load_knowledge_table(wrong, tmp_path)
    path = make_knowledge(tmp_path, [record("a.jpg", "X")])
    with pytest.raises(KnowledgeTableError, match=r"classes with no images \(1: 'y'\)"):
        load_knowledge_table(path, tmp_path / "imgs", classes=["X", "Y"])
    table = load_knowledge_table(path, tmp_path / "imgs", classes=["Z", "X"], allow_empty_classes=True)
    assert table.record_class.tolist() == [1] and table.class_counts.tolist() == [0, 1]
    with pytest.raises(ValueError, match="missing_definition"):
        load_knowledge_table(path, tmp_path / "imgs", missing_definition="skip")
    with pytest.raises(KnowledgeTableError, match="image_root .* is not a folder"):
        load_knowledge_table(path, tmp_path / "nowhere")


def test_heads_outside_given_classes_get_minus_one(tmp_path):
    path = make_knowledge(tmp_path, [record("a.jpg", "X"), record("b.jpg", "Other")])
    table = load_knowledge_table(path, tmp_path / "imgs", classes=["x"])
    assert table.record_class.tolist() == [0, -1]


def test_published_vqa_rad_train():
    table = published_vqa_rad_table()
    # official_code_notes.md §2.1: 4,008 records, 285 classes, counts 1 ... 100
    assert len(table) == 4008 and table.num_classes == 285
    assert int(table.class_counts.min()) == 1 and int(table.class_counts.max()) == 100
    assert int(table.class_counts.sum()) == 4008 and len(table.images) == 260
    assert torch.all(table.pool_sizes >= 1)


def test_published_slake_train_null_definitions():
    path = shared("bamco_kg", "Slake1.0", "KG_Slake_Train.json")
    images = shared("slake", "imgs")
    dropped = load_knowledge_table(path, images, missing_definition="drop")
    # published loader: records with def_head null dropped -> 8,365 records, 27 classes, counts 3 ... 2,718
    assert len(dropped) == 8365 and dropped.num_classes == 27
    assert (int(dropped.class_counts.min()), int(dropped.class_counts.max())) == (3, 2718)
    kept = load_knowledge_table(path, images)
    assert len(kept) == 8387 and kept.num_classes == 28
