"""The scispacy pipeline: a spaCy model's entity spans linked by scispaCy's EntityLinker.

``en_core_sci_sm`` cannot be installed offline, so the tests save a small spaCy pipeline (an entity
ruler standing in for the NER model) to a folder and load it through the same ``spacy.load`` path the
real model takes (``--spacy-model PATH``); the linker is scispaCy's own ``CandidateGenerator`` and
``EntityLinker`` over an index built from the knowledge base.
"""

import json
import os
import stat

import pytest
from helpers_data import make_slake_copy, slake_entry
from helpers_knowledge import build_argv, write_umls

pytest.importorskip("scispacy")
pytest.importorskip("nmslib")

from bamco_fast.knowledge import JsonlKnowledgeBase, linking
from bamco_fast.knowledge.cli import main as kg_main
from bamco_fast.knowledge.extract import SciSpacyExtractor, make_extractor
from bamco_fast.knowledge.kb_umls import UmlsKnowledgeBase

_ENTITY_TEXTS = [
    "lungs",
    "pleural effusions",
    "pleural efusion",
    "pneumothorax",
    "PTX",
    "kidney",
    "heart",
    "lung",
]


@pytest.fixture(scope="module")
def spacy_model(tmp_path_factory):
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler", config={"phrase_matcher_attr": "LOWER"})
    ruler.add_patterns([{"label": "ENTITY", "pattern": text} for text in _ENTITY_TEXTS])
    folder = tmp_path_factory.mktemp("model") / "tiny_sci"
    nlp.to_disk(folder)
    return folder


@pytest.fixture
def kb(tmp_path):
    def concept(cid, name, definition, tail, aliases=()):
        relations = [{"relation": "located in", "tail": tail}]
        return {
            "id": cid,
            "name": name,
            "aliases": list(aliases),
            "definition": definition,
            "relations": relations,
        }

    concepts = [
        concept("C1", "Lung", "organ of breathing", "Chest", ["pulmo"]),
        concept("C2", "Pleural effusion", "fluid in the pleural space", "Pleura"),
        concept("C3", "Pneumothorax", "air in the pleural space", "Pleura"),
        concept("C4", "Heart", "pumps blood", "Chest", ["cardiac"]),
        concept("C5", "Liver", "metabolic organ", "Abdomen"),
    ]
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(json.dumps(c) for c in concepts) + "\n")
    return JsonlKnowledgeBase(path)


def _ids(mentions):
    return [(m.text, m.concept_id) for m in mentions]


def test_tfidf_linker_links_fuzzy_plural_and_abbreviated_mentions(kb, spacy_model):
    extractor = make_extractor(kb, "scispacy", model=str(spacy_model))
    assert isinstance(extractor, SciSpacyExtractor) and extractor.linker_name == "tfidf"
    texts = [
        "Both lungs show pleural effusions",
        "A pleural efusion is seen",
        "A large pneumothorax (PTX) on the left; the PTX is tension",
        "The kidney is normal",
    ]
    results = extractor.extract(texts)
    assert _ids(results[0]) == [("lungs", "C1"), ("pleural effusions", "C2")]
    assert _ids(results[1]) == [("pleural efusion", "C2")]  # misspelt: character 3-grams still match
    assert _ids(results[2]) == [("pneumothorax", "C3"), ("PTX", "C3"), ("PTX", "C3")]
    assert results[3] == []  # no knowledge-base name is close to "kidney"
    assert "tfidf linker" in extractor.description and str(spacy_model) in extractor.description


def test_exact_linker_needs_the_name(kb, spacy_model):
    extractor = make_extractor(kb, "scispacy", model=str(spacy_model), linker="exact")
    results = extractor.extract(["Both lungs show pleural effusions", "A pleural efusion is seen"])
    assert _ids(results[0]) == [("lungs", "C1"), ("pleural effusions", "C2")]
    assert results[1] == []


def test_threshold_controls_fuzzy_links(kb, spacy_model):
    strict = SciSpacyExtractor(kb, model=str(spacy_model), linker_config=linking.LinkerConfig(threshold=0.99))
    [fuzzy, exact] = strict.extract(["A pleural efusion is seen", "the lung"])
    assert fuzzy == []  # similarity of the misspelt span is below 0.99
    assert _ids(exact) == [("lung", "C1")]


def test_index_cache_is_reused_and_rebuilt_when_names_change(kb, tmp_path, monkeypatch):
    folder = tmp_path / "index"
    config = linking.LinkerConfig(index_dir=folder)
    old_umask = os.umask(0o022)
    try:
        linking.build_candidate_generator(kb, config)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755  # a normal folder, not mkdtemp's 0o700
    files = sorted(p.name for p in folder.iterdir())
    assert files == [
        "bamco_index.json",
        "concept_aliases.json",
        "nmslib_index.bin",
        "tfidf_vectorizer.joblib",
        "tfidf_vectors_sparse.npz",
    ]
    assert not list(tmp_path.glob(".index.*"))  # staging folder renamed away

    def refit(*args, **kwargs):
        raise AssertionError("the cached index should have been loaded")

    with monkeypatch.context() as m:
        m.setattr(linking, "_fit", refit)
        generator = linking.build_candidate_generator(kb, config)
    [[candidate, *_]] = [sorted(c, key=lambda c: -max(c.similarities)) for c in generator(["lungs"], 5)]
    assert candidate.concept_id == "C1"

    extra = tmp_path / "kb2.jsonl"
    extra.write_text(json.dumps({"id": "C9", "name": "Spleen"}) + "\n")
    with monkeypatch.context() as m:
        m.setattr(linking, "_fit", refit)
        with pytest.raises(AssertionError, match="cached index"):
            linking.build_candidate_generator(JsonlKnowledgeBase(extra), config)
    generator = linking.build_candidate_generator(JsonlKnowledgeBase(extra), config)
    assert json.loads((folder / "concept_aliases.json").read_text()) == ["Spleen"]


def test_umls_names_feed_the_linker(tmp_path, spacy_model):
    umls = UmlsKnowledgeBase(write_umls(tmp_path / "META"), progress=False)
    names = set(umls.iter_names())
    assert ("C0024109", "Lung", False) in names and ("C0032326", "Pneumothorax", True) in names
    assert not any(cid == "C0006826" for cid, _, _ in names)  # MSH only: outside SNOMEDCT_US
    assert not any(name == "Cardiac structure" for _, name, _ in names)  # suppressed
    extractor = SciSpacyExtractor(umls, model=str(spacy_model))
    [mentions] = extractor.extract(["pneumothorax of both lungs"])
    assert _ids(mentions) == [("pneumothorax", "C0032326"), ("lungs", "C0024109")]


def test_linker_and_model_errors(kb, tmp_path):
    with pytest.raises(ImportError, match="not installed or not a pipeline folder"):
        SciSpacyExtractor(kb, model=str(tmp_path / "missing_model"))
    with pytest.raises(ValueError, match="linker must be one of"):
        SciSpacyExtractor(kb, model=str(tmp_path), linker="fuzzy")
    with pytest.raises(ValueError, match="k must be >= 1"):
        linking.LinkerConfig(k=0)
    with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
        linking.LinkerConfig(threshold=1.5)
    empty = tmp_path / "empty.jsonl"
    empty.write_text(json.dumps({"id": "X", "name": "  "}) + "\n")
    with pytest.raises(ValueError, match="has no names to link to"):
        linking.build_candidate_generator(JsonlKnowledgeBase(empty))


def test_build_cli_with_scispacy_pipeline(kb, spacy_model, tmp_path, capsys):
    root = make_slake_copy(
        tmp_path / "slake",
        [
            slake_entry(0, "xmlab0/source.jpg", "Is there a pneumothorax?", "Yes", "CLOSED"),
            slake_entry(1, "xmlab1/source.jpg", "What is abnormal?", "pleural efusion"),
            slake_entry(2, "xmlab2/source.jpg", "Is the heart enlarged?", "No", "CLOSED"),
        ],
        images=("xmlab0/source.jpg", "xmlab1/source.jpg", "xmlab2/source.jpg"),
    )
    make_slake_copy(tmp_path / "slake", [], split="validate")
    out = tmp_path / "kg.json"
    argv = build_argv(
        root,
        f"jsonl:{kb.source}",
        out,
        "--pipeline",
        "auto",
        "--spacy-model",
        str(spacy_model),
        "--linker-index",
        str(tmp_path / "index"),
        "--no-progress",
    )
    assert kg_main(argv) == 0
    printed = capsys.readouterr().out
    assert f"entity pipeline: scispacy (model {spacy_model}, tfidf linker)" in printed
    heads = {(r["image"], r["head_entity"], r["def_head"]) for r in json.loads(out.read_text())}
    assert heads == {
        ("xmlab0/source.jpg", "Pneumothorax", "air in the pleural space"),
        ("xmlab1/source.jpg", "Pleural effusion", "fluid in the pleural space"),
    }
    assert (tmp_path / "index" / "bamco_index.json").is_file()
