import json

import pytest
from helpers_data import make_slake_copy, shared, slake_entry
from helpers_knowledge import build_argv

from bamco_fast.data import LayoutError
from bamco_fast.knowledge import SlakeKnowledgeGraph, coverage, read_knowledge_file
from bamco_fast.knowledge.cli import main as kg_main

pytest.importorskip("scispacy")


def test_slake_kg_reader_real_files():
    kg = SlakeKnowledgeGraph(shared("slake", "KG"))
    heart = kg.concepts({"Heart"})["Heart"]
    assert ("four chambers", "left atrium") in heart.relations and (
        "four chambers",
        "right ventricle",
    ) in heart.relations
    edema = kg.concepts({"Brain Edema"})["Brain Edema"]
    assert edema.definition.startswith("brain edema refers to")  # description -> definition
    assert not any(label in ("description", "definition") for label, _ in edema.relations)
    assert "gallstone" in kg.match_names({"gallstone"})


def test_slake_kg_errors(tmp_path):
    with pytest.raises(LayoutError, match=r"en_organ\.csv"):
        SlakeKnowledgeGraph(tmp_path)
    (tmp_path / "en_organ.csv").write_text("organ#attribute#value\nLung#function\n")
    (tmp_path / "en_disease.csv").write_text("disease#attribute#value\n")
    with pytest.raises(ValueError, match=r"en_organ.csv:2: expected 3"):
        SlakeKnowledgeGraph(tmp_path)


def test_real_slake_build_covers_published_file(tmp_path, capsys):
    data = shared("slake")
    published = shared("bamco_kg", "Slake1.0", "KG_Slake_Train.json")
    out = tmp_path / "kg.json"
    argv = [
        "build",
        "--dataset",
        "slake",
        "--root",
        str(data),
        "--split",
        "train",
        "--kb",
        f"slake-kg:{data / 'KG'}",
        "--out",
        str(out),
        "--no-progress",
        "--compare",
        str(published),
    ]
    assert kg_main(argv) == 0  # default --missing-definition auto: slake-kg keeps definition-less organs
    printed = capsys.readouterr().out
    assert "| # Images | # Head Entities |" in printed
    assert "heads without a definition: keep (--missing-definition auto)" in printed
    ours = read_knowledge_file(out)
    report = coverage(ours, read_knowledge_file(published))
    assert report.fraction >= 0.9, report.format()
    assert len(set(ours)) == len(ours)  # de-duplicated
    assert kg_main([*argv[:-2], "--out", str(tmp_path / "again.json")]) == 0
    assert (tmp_path / "again.json").read_bytes() == out.read_bytes()  # deterministic


def test_missing_definition_policy(tmp_path):
    """auto keeps definition-less heads of Slake's KG (organs have none) and drops them for JSONL/UMLS."""
    from bamco_fast.knowledge import BuildConfig, build_knowledge
    from bamco_fast.knowledge.kb_jsonl import JsonlKnowledgeBase

    root = make_slake_copy(
        tmp_path / "slake",
        [
            slake_entry(0, "xmlab0/source.jpg", "What organ is shown?", "Lung"),
            slake_entry(1, "xmlab1/source.jpg", "What disease is shown?", "Brain Edema"),
        ],
        images=("xmlab0/source.jpg", "xmlab1/source.jpg"),
    )
    make_slake_copy(tmp_path / "slake", [], split="validate")
    slake_kg = SlakeKnowledgeGraph(shared("slake", "KG"))

    def heads(kb, policy):
        config = BuildConfig(
            dataset="slake",
            root=root,
            pipeline="offline",
            overlap="longest",
            missing_definition=policy,
            progress=False,
        )
        result = build_knowledge(config, [kb])
        return result, {r.head_entity: r.def_head for r in result.records}

    result, got = heads(slake_kg, "auto")
    assert result.missing_definition == "keep"
    assert got["Lung"] is None and got["Brain Edema"].startswith("brain edema refers to")
    result, got = heads(slake_kg, "drop")
    assert result.missing_definition == "drop" and set(got) == {"Brain Edema"}
    assert result.filtered["no definition"] == len(slake_kg.concepts({"Lung"})["Lung"].relations)

    custom = tmp_path / "custom.jsonl"
    custom.write_text(
        json.dumps({"id": "L", "name": "Lung", "relations": [{"relation": "part of", "tail": "Chest"}]})
        + "\n"
        + json.dumps(
            {
                "id": "E",
                "name": "Brain Edema",
                "definition": "swelling of the brain",
                "relations": [{"relation": "location", "tail": "Brain"}],
            }
        )
        + "\n"
    )
    jsonl = JsonlKnowledgeBase(custom)
    result, got = heads(jsonl, "auto")
    assert result.missing_definition == "drop" and got == {"Brain Edema": "swelling of the brain"}
    result, got = heads(jsonl, "keep")
    assert got == {"Lung": None, "Brain Edema": "swelling of the brain"}
    with pytest.raises(ValueError, match="missing_definition must be one of"):
        heads(jsonl, "sometimes")


def test_test_split_build_warns_about_answer_leakage(tmp_path, capsys):
    root = make_slake_copy(
        tmp_path / "slake",
        [slake_entry(0, "xmlab0/source.jpg", "Which organ is abnormal?", "Lung")],
        split="test",
        images=("xmlab0/source.jpg",),
    )
    out = tmp_path / "kg_test.json"
    argv = build_argv(root, f"slake-kg:{shared('slake', 'KG')}", out, "--split", "test", "--no-progress")
    assert kg_main(argv) == 0
    assert "leaks the answers" in capsys.readouterr().err
    assert {r["head_entity"] for r in json.loads(out.read_text())} == {"Lung"}


def test_build_bad_input_leaves_no_output(tmp_path, capsys):
    kg = shared("slake", "KG")
    root = make_slake_copy(
        tmp_path / "slake",
        [
            slake_entry(0, "xmlab0/source.jpg", "Q?", "Lung"),
            slake_entry(1, "xmlab1/source.jpg", "Q?", "Liver"),
        ],
        images=("xmlab0/source.jpg",),
    )
    make_slake_copy(tmp_path / "slake", [], split="validate")
    out = tmp_path / "out.json"
    base = build_argv(root, f"slake-kg:{kg}", out, "--missing-definition", "keep", "--no-progress")
    assert kg_main(base) == 2
    assert "xmlab1/source.jpg" in capsys.readouterr().err and not out.exists()
    assert list(tmp_path.glob(".out.json*")) == []
    assert kg_main([*base, "--skip-missing"]) == 0
    assert "missing image: 1" in capsys.readouterr().out
    records = json.loads(out.read_text())
    assert {r["image"] for r in records} == {"xmlab0/source.jpg"} and {r["head_entity"] for r in records} == {
        "Lung"
    }
    assert kg_main(build_argv(root, "umls:/nonexistent", out)) == 2
    assert kg_main(build_argv(tmp_path, f"slake-kg:{kg}", out)) == 2
    assert "not a Slake 1.0 folder" in capsys.readouterr().err


def test_interrupt_leaves_previous_output(tmp_path, monkeypatch):
    from bamco_fast.knowledge import builder

    out = tmp_path / "out.json"
    out.write_text("[]\n")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(builder, "make_extractor", interrupted)
    kg = shared("slake", "KG")
    argv = [
        "build",
        "--dataset",
        "slake",
        "--root",
        str(shared("slake")),
        "--kb",
        f"slake-kg:{kg}",
        "--out",
        str(out),
        "--no-progress",
    ]
    assert kg_main(argv) == 130
    assert out.read_text() == "[]\n" and list(tmp_path.iterdir()) == [out]
