"""Knowledge CLI and builder: bad options and paths fail before the work (exit 2); normal output modes."""

from __future__ import annotations

import json
import os
import stat

import pytest
from helpers_knowledge import build_argv, write_pathvqa_json

from bamco_fast.knowledge import BuildConfig, build_knowledge
from bamco_fast.knowledge.cli import main as kg_main
from bamco_fast.knowledge.kb_jsonl import JsonlKnowledgeBase

ROWS = [
    {"image": "a.jpg", "question": "Is there a tumor in the lung?", "answer": "yes"},
    {"image": "b.jpg", "question": "Which organ is shown?", "answer": "Liver"},
]
CONCEPTS = [
    {
        "id": "L",
        "name": "Lung",
        "definition": "organ of respiration",
        "relations": [
            {"relation": "part of", "tail": "Chest"},
            {"relation": "part of", "tail": "Respiratory system"},
            {"relation": "has finding", "tail": "Tumor"},
        ],
    },
    {
        "id": "T",
        "name": "Tumor",
        "definition": "a mass",
        "relations": [{"relation": "finding site", "tail_id": "L"}],
    },
    {"id": "V", "name": "Liver", "definition": "organ of metabolism", "relations": []},
]


def _write_jsonl(path, concepts):
    path.write_text("".join(json.dumps(c) + "\n" for c in concepts), encoding="utf-8")
    return path


@pytest.fixture
def setup(tmp_path):
    root = write_pathvqa_json(tmp_path / "pvqa", ROWS)
    kb = _write_jsonl(tmp_path / "kb.jsonl", CONCEPTS)

    def argv(out, *extra, root=root):
        return build_argv(
            root,
            f"jsonl:{kb}",
            out,
            "--pipeline",
            "offline",
            "--val-fraction",
            "0",
            "--no-progress",
            *extra,
            dataset="pathvqa",
        )

    return tmp_path, argv


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_build_output_modes_follow_umask_and_existing_file(setup, capsys):
    tmp_path, argv = setup
    old = os.umask(0o022)
    try:
        out = tmp_path / "kg.json"
        assert kg_main(argv(out)) == 0
        assert _mode(out) == 0o644 and len(json.loads(out.read_text())) == 4
        os.chmod(out, 0o664)
        assert kg_main(argv(out)) == 0
        assert _mode(out) == 0o664
        defs = tmp_path / "defs.jsonl"
        assert kg_main(["export-definitions", str(out), "--out", str(defs)]) == 0
        assert _mode(defs) == 0o644
    finally:
        os.umask(old)


def test_bad_out_fails_before_the_build(setup, capsys):
    tmp_path, argv = setup
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    missing_root = tmp_path / "no_dataset"
    # A bad --root would fail the build; the --out message shows the output was checked first.
    for out, message in (
        (tmp_path, "--out must be a file path"),
        (regular / "kg.json", "--out must be a file in a folder"),
        ("/proc/bamco_fast_missing/kg.json", "--out: cannot create files in '/proc'"),
    ):
        if str(out).startswith("/proc") and not os.path.isdir("/proc"):
            continue
        assert kg_main(argv(out, root=missing_root)) == 2
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err
    reference = tmp_path / "missing_reference.json"
    assert kg_main(argv(tmp_path / "kg.json", "--compare", str(reference), root=missing_root)) == 2
    err = capsys.readouterr().err
    assert "--compare must be an existing file" in err and "missing_reference.json" in err
    assert not (tmp_path / "kg.json").exists()
    assert kg_main(argv(tmp_path / "kg.json", "--image-map", str(tmp_path), root=missing_root)) == 2
    assert "--image-map must be an existing file" in capsys.readouterr().err


def test_export_definitions_checks_out_and_input_first(tmp_path, capsys):
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    missing = tmp_path / "missing.json"
    assert kg_main(["export-definitions", str(missing), "--out", str(tmp_path)]) == 2
    assert "--out must be a file path" in capsys.readouterr().err
    assert kg_main(["export-definitions", str(missing), "--out", str(regular / "d.jsonl")]) == 2
    assert "--out must be a file in a folder" in capsys.readouterr().err
    assert kg_main(["export-definitions", str(missing), "--out", str(tmp_path / "d.jsonl")]) == 2
    assert "FILE must be an existing file" in capsys.readouterr().err
    assert kg_main(["compare", "--ours", str(missing), "--reference", str(missing)]) == 2
    assert "--ours must be an existing file" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


@pytest.mark.parametrize("value", ["-1", "0"])
def test_max_relations_must_be_positive(setup, capsys, value):
    tmp_path, argv = setup
    out = tmp_path / "kg.json"
    assert kg_main(argv(out, "--max-relations", value)) == 2
    assert f"max_relations (--max-relations) must be an int >= 1, or None for no cap, got {value}" in (
        capsys.readouterr().err
    )
    assert not out.exists()
    assert kg_main(argv(out, "--max-relations", "1")) == 0
    records = json.loads(out.read_text())
    # one relation per (QA pair, head): Lung and Tumor on a.jpg; Liver has none
    assert sorted((r["image"], r["head_entity"]) for r in records) == [("a.jpg", "Lung"), ("a.jpg", "Tumor")]
    with pytest.raises(ValueError, match="max_relations"):
        BuildConfig(dataset="pathvqa", root=tmp_path, max_relations=True)


def test_first_kb_without_relations_is_refused(setup, capsys):
    tmp_path, argv = setup
    defs_only = _write_jsonl(tmp_path / "defs.jsonl", [{**c, "relations": []} for c in CONCEPTS])
    kb = JsonlKnowledgeBase(defs_only)
    assert kb.relation_count == 0 and JsonlKnowledgeBase(tmp_path / "kb.jsonl").relation_count == 4
    out = tmp_path / "kg.json"
    args = argv(out)
    args[args.index("--kb") + 1] = f"jsonl:{defs_only}"
    assert kg_main(args) == 2
    err = capsys.readouterr().err
    assert "has no relations" in err and str(defs_only) in err and not out.exists()
    # As a later definition source it is fine.
    assert kg_main([*argv(out), "--kb", f"jsonl:{defs_only}"]) == 0
    config = BuildConfig(dataset="pathvqa", root=tmp_path / "pvqa", val_fraction=0, pipeline="offline")
    with pytest.raises(ValueError, match="first knowledge base .* has no relations"):
        build_knowledge(config, [kb])


def test_empty_build_warns(setup, capsys):
    tmp_path, argv = setup
    unrelated = _write_jsonl(
        tmp_path / "other.jsonl",
        [
            {
                "id": "K",
                "name": "Kidney",
                "definition": "d",
                "relations": [{"relation": "isa", "tail": "Organ"}],
            }
        ],
    )
    out = tmp_path / "kg.json"
    args = argv(out)
    args[args.index("--kb") + 1] = f"jsonl:{unrelated}"
    assert kg_main(args) == 0
    assert json.loads(out.read_text()) == []
    assert "warning: no knowledge record was built (0 of 2 QA pairs had a linked entity" in (
        capsys.readouterr().err
    )
