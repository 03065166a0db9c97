"""``EntityTexts``: the knowledge-base names found in questions, cached, saved and loaded."""

from __future__ import annotations

import json

import pytest

from bamco_fast.models.entity_input import ENTITIES_FILE, EntityTexts

NAMES = ["Liver", "Lung", "Brain Edema", "Heart", "Magnetic Resonance Imaging", "Left Lung"]


def test_names_found_in_order_without_repeats():
    entities = EntityTexts(NAMES)
    texts = entities(
        [
            "Is the liver bigger than the heart?",
            "Where is the brain edema? Is the LIVER normal? liver again",
            "Which organ is abnormal?",
            "Are the lungs healthy?",  # plural -> singular name
            "Is   brain   edema present?",  # whitespace-insensitive
        ]
    )
    assert texts[0] == "Liver, Heart"
    assert texts[1] == "Brain Edema, Liver"
    assert texts[2] == ""
    assert texts[3] == "Lung"
    assert texts[4] == "Brain Edema"


def test_overlapping_names_and_abbreviations():
    entities = EntityTexts(NAMES)
    (overlap,) = entities(["Is the left lung collapsed?"])
    assert overlap.split(", ") == ["Left Lung", "Lung"]  # every match, longest first at one start
    (abbrev,) = entities(["Was magnetic resonance imaging (MRI) used? Is the MRI normal?"])
    assert abbrev == "Magnetic Resonance Imaging"


def test_each_question_is_parsed_once_and_order_is_kept():
    entities = EntityTexts(NAMES)
    calls = []
    real = type(entities.extractor).extract

    def counting(self, texts):
        calls.append(list(texts))
        return real(self, texts)

    entities.extractor.extract = counting.__get__(entities.extractor)
    questions = ["liver?", "heart?", "liver?", "nothing here"]
    assert entities(questions) == ["Liver", "Heart", "Liver", ""]
    assert calls == [["liver?", "heart?", "nothing here"]]
    assert entities(["heart?", "liver?"]) == ["Heart", "Liver"]
    assert len(calls) == 1  # all cached
    assert entities.coverage(questions) == 0.75
    assert entities.coverage([]) == 0.0


def test_save_load_round_trip(tmp_path):
    entities = EntityTexts(["Liver", " Liver ", "", "Heart", "Liver"])
    assert entities.names == ("Liver", "Heart")
    path = entities.save(tmp_path)
    assert path.name == ENTITIES_FILE
    loaded = EntityTexts.load(tmp_path)
    assert loaded.names == entities.names
    assert loaded(["the heart and the liver"]) == ["Heart, Liver"]


def test_from_knowledge_file_uses_head_entities(tmp_path):
    record = {
        "image": "a.jpg",
        "question": "q",
        "answer": "a",
        "head_entity": "Kidney",
        "tail_entity": "urine",
        "def_head": None,
        "relation": "function",
    }
    path = tmp_path / "kg.json"
    path.write_text(json.dumps([record, {**record, "head_entity": "Spleen"}, record]), encoding="utf-8")
    assert EntityTexts.from_knowledge_file(path).names == ("Kidney", "Spleen")


def test_bad_input(tmp_path):
    with pytest.raises(ValueError, match="names: expected at least one"):
        EntityTexts(["", "  "])
    with pytest.raises(ValueError, match="names: expected a sequence"):
        EntityTexts("Liver")
    with pytest.raises(FileNotFoundError):
        EntityTexts.load(tmp_path)
    (tmp_path / ENTITIES_FILE).write_text('{"names": "Liver"}', encoding="utf-8")
    with pytest.raises(ValueError, match="'names' list"):
        EntityTexts.load(tmp_path)
