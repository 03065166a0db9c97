import json

import pytest
from helpers_data import shared

from bamco_fast.data import DataFormatError
from bamco_fast.knowledge import knowledge_stats, load_image_map, read_knowledge_file
from bamco_fast.knowledge.cli import main as kg_main


def test_published_slake_stats_match_raw_json():
    path = shared("bamco_kg", "Slake1.0", "KG_Slake_Train.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    stats = knowledge_stats(read_knowledge_file(path))
    assert stats.records == len(raw)
    assert stats.images == len({r["image"] for r in raw})
    assert stats.heads == len({r["head_entity"] for r in raw})
    assert stats.relations == len({r["relation"] for r in raw})


def test_vqarad_image_map_resolves_to_existing_files():
    image_dir = shared("vqa_rad", "VQA_RAD Image Folder")
    mapping = load_image_map(shared("bamco_kg", "VQARAD", "image_id_to_synpic.json"))
    for name in ("KG_VQARAD_Train.json", "KG_VQARAD_Test.json"):
        records = read_knowledge_file(shared("bamco_kg", "VQARAD", name), image_map=mapping)
        assert all(r.image.startswith("synpic") for r in records)
        assert all((image_dir / image).is_file() for image in {r.image for r in records})
    ids = {r["image"] for r in json.loads(shared("bamco_kg", "VQARAD", "KG_VQARAD_Train.json").read_text())}
    resolved = {mapping[i] for i in ids}
    assert len(resolved) < len(ids)  # the same picture appears under several ids


def test_reader_errors(tmp_path):
    bad = tmp_path / "kg.json"
    bad.write_text(json.dumps([{"image": "a", "question": "q"}]))
    with pytest.raises(DataFormatError, match="record 0: expected fields"):
        read_knowledge_file(bad)
    record = {
        "image": "9_train.jpg",
        "question": "q",
        "answer": "a",
        "head_entity": "h",
        "tail_entity": "t",
        "def_head": None,
        "relation": "r",
    }
    bad.write_text(json.dumps([record]))
    with pytest.raises(DataFormatError, match="not in the image map"):
        read_knowledge_file(bad, image_map={"0_train.jpg": "synpic1.jpg"})


def test_stats_and_export_cli(tmp_path, capsys):
    path = shared("bamco_kg", "Slake1.0", "KG_Slake_Train.json")
    assert kg_main(["stats", str(path)]) == 0
    assert "KG_Slake_Train.json" in capsys.readouterr().out
    out = tmp_path / "defs.jsonl"
    assert kg_main(["export-definitions", str(path), "--out", str(out)]) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert {"id", "name", "definition"} <= set(lines[0]) and all(item["definition"] for item in lines)
