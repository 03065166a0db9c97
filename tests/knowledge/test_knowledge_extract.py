import json

import pytest

from bamco_fast.knowledge import JsonlKnowledgeBase, entity_source_text, make_extractor

pytest.importorskip("scispacy")


@pytest.mark.parametrize(
    ("question", "answer", "expected"),
    [
        ("Is the lung abnormal?", "Yes", "Is the lung abnormal?"),
        ("Is the lung abnormal?", "no", None),
        ("Which organ?", "Liver, Heart", "Liver, Heart"),
        ("Which is bigger, lung or heart?", "Lung", "Lung"),
    ],
)
def test_entity_source_text(question, answer, expected):
    assert entity_source_text(question, answer) == expected


@pytest.fixture
def kb(tmp_path):
    concepts = [
        {"id": "lung", "name": "Lung", "aliases": ["pulmo"], "definition": "organ", "relations": []},
        {"id": "lc", "name": "Lung Cancer", "definition": "tumour", "relations": []},
        {"id": "copd", "name": "chronic obstructive pulmonary disease", "relations": []},
        {"id": "the", "name": "The", "relations": []},
        {"id": "eye", "name": "Eye", "relations": []},
    ]
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in concepts) + "\n")
    return JsonlKnowledgeBase(path)


def _ids(mentions):
    return [m.concept_id for m in mentions]


def test_offline_matcher_nested_plural_alias_and_stopwords(kb):
    extractor = make_extractor(kb, "offline")
    texts = ["The LUNG CANCER", "both eyes", "pulmo", "the the"]
    results = extractor.extract(texts)
    assert _ids(results[0]) == ["lung", "lc"]  # by position; nested match kept; "The" is a stop word
    assert _ids(results[1]) == ["eye"] and results[1][0].text == "eyes"
    assert _ids(results[2]) == ["lung"] and results[3] == []
    longest = make_extractor(kb, "offline", overlap="longest").extract(["The LUNG CANCER"])
    assert _ids(longest[0]) == ["lc"]


def test_offline_matcher_abbreviation_takes_long_form(kb, tmp_path):
    extractor = make_extractor(kb, "offline")
    [mentions] = extractor.extract(["Signs of chronic obstructive pulmonary disease (COPD) and COPD"])
    assert _ids(mentions) == ["copd"]


def test_jsonl_kb_errors(tmp_path):
    from bamco_fast.data import DataFormatError

    path = tmp_path / "bad.jsonl"
    path.write_text('{"id": "a", "name": "A"}\n{"id": "b"}\n')
    with pytest.raises(DataFormatError) as info:
        JsonlKnowledgeBase(path)
    assert info.value.line == 2
    path.write_text('{"id": "a", "name": "A", "relations": [{"relation": "r", "tail_id": "zz"}]}\n')
    with pytest.raises(DataFormatError, match="tail_id 'zz'"):
        JsonlKnowledgeBase(path)
