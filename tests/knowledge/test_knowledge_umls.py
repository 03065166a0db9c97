import pytest
from helpers_knowledge import write_pathvqa_json, write_umls

from bamco_fast.data import DataFormatError, MissingFileError
from bamco_fast.knowledge import BuildConfig, UmlsKnowledgeBase, build_knowledge, compact_key


def test_match_names_restricts_vocabulary_language_and_suppression(tmp_path):
    kb = UmlsKnowledgeBase(write_umls(tmp_path / "META"), progress=False)
    keys = {compact_key(s) for s in ("lung", "cancer", "heart", "cardiac structure", "left lung", "nothing")}
    hits = kb.match_names(keys)
    assert set(hits) == {"lung", "heart", "leftlung"}
    assert [h.concept_id for h in hits["lung"]] == ["C0024109"]  # French atom of C0009999 ignored


def test_concepts_definitions_relations_and_names(tmp_path):
    kb = UmlsKnowledgeBase(write_umls(tmp_path), progress=False)
    lung = kb.concepts({"C0024109", "C404"})["C0024109"]
    assert lung.name == "Lung"  # UMLS preferred name, not the SNOMED term
    assert lung.definition == "One of a pair of organs in the chest."  # NCI before MSH
    assert set(lung.relations) == {
        ("finding site of", "Pneumothorax"),
        ("isa", "Left lung"),
        ("inverse isa", "Heart"),
        ("mapped to", "Heart"),
    }
    msh_first = UmlsKnowledgeBase(tmp_path, def_sabs=("MSH", "NCI"), progress=False)
    assert msh_first.concepts({"C0024109"})["C0024109"].definition.startswith("Either of the pair")
    assert kb.concepts({"C0225730"})["C0225730"].definition is None  # only a CSP definition


def test_semantic_type_filter_reads_mrsty(tmp_path):
    kb = UmlsKnowledgeBase(write_umls(tmp_path), semantic_types=frozenset({"T023"}), progress=False)
    assert set(kb.match_names({"lung", "heart"})) == {"lung"}


def test_missing_and_malformed_rrf(tmp_path):
    write_umls(tmp_path)
    (tmp_path / "MRREL.RRF").unlink()
    with pytest.raises(MissingFileError, match=r"MRREL\.RRF"):
        UmlsKnowledgeBase(tmp_path)
    write_umls(tmp_path)
    with (tmp_path / "MRCONSO.RRF").open("a") as handle:
        handle.write("C1|ENG|P|broken line|\n")
    with pytest.raises(DataFormatError) as info:
        UmlsKnowledgeBase(tmp_path, progress=False).match_names({"lung"})
    assert info.value.line == 10 and "expected 18" in str(info.value)


def test_build_with_umls_follows_paper_rules(tmp_path):
    umls = UmlsKnowledgeBase(write_umls(tmp_path / "META"), progress=False)
    rows = [
        {"image": "a.jpg", "question": "Is there a pneumothorax in the lungs?", "answer": "yes"},
        {"image": "b.jpg", "question": "Is the heart enlarged?", "answer": "no"},
        {"image": "c.jpg", "question": "Which organ is shown?", "answer": "Lung"},
    ]
    root = write_pathvqa_json(tmp_path / "pvqa", rows)
    config = BuildConfig(
        dataset="pathvqa", root=root, split="train", val_fraction=0, pipeline="offline", progress=False
    )
    result = build_knowledge(config, [umls])
    triples = {(r.image, r.head_entity, r.relation, r.tail_entity) for r in result.records}
    assert triples == {
        ("a.jpg", "Lung", "finding site of", "Pneumothorax"),
        ("a.jpg", "Lung", "isa", "Left lung"),
        ("a.jpg", "Pneumothorax", "has finding site", "Lung"),
        ("c.jpg", "Lung", "finding site of", "Pneumothorax"),
        ("c.jpg", "Lung", "isa", "Left lung"),
    }
    assert result.filtered["dropped label"] == 4  # inverse_isa and mapped_to, for two QA pairs
    assert all(r.def_head for r in result.records)
    assert result.records == sorted(
        result.records, key=lambda r: (r.image, r.head_entity, r.relation, r.tail_entity)
    )
