"""Bad and odd inputs of the dataset readers and of ``check-splits``; file modes of the atomic writers."""

from __future__ import annotations

import json
import os
import re
import stat
import sys

import pytest
from helpers_data import REPO_ROOT, make_slake_copy, png_bytes, shared, slake_entry, write_json

from bamco_fast.data import DataFormatError, MissingFileError, SkipLog, load_split, read_pathvqa, read_slake
from bamco_fast.data.cli import main as data_main
from bamco_fast.data.jsonio import (
    atomic_write_json,
    atomic_write_text,
    check_output_path,
    make_staging_dir,
)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


# ---- atomic writers: normal file modes ---------------------------------------------------------------


def test_atomic_write_honours_umask_and_keeps_existing_mode(tmp_path, umask_022):
    new = tmp_path / "new.json"
    atomic_write_json(new, {"a": 1})
    assert _mode(new) == 0o644 and json.loads(new.read_text()) == {"a": 1}
    os.umask(0o027)
    atomic_write_text(tmp_path / "strict.txt", "x")
    assert _mode(tmp_path / "strict.txt") == 0o640
    existing = tmp_path / "existing.txt"
    existing.write_text("old")
    for mode in (0o664, 0o600, 0o444):
        os.chmod(existing, mode)
        atomic_write_text(existing, f"mode {mode:o}")
        assert _mode(existing) == mode and existing.read_text() == f"mode {mode:o}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt", "new.json", "strict.txt"]


def test_staging_dir_gets_a_normal_folder_mode(tmp_path, umask_022):
    staging = make_staging_dir(tmp_path / "cache", "index")
    assert staging.parent == tmp_path / "cache" and staging.name.startswith(".index.")
    assert _mode(staging) == 0o755 and list(staging.iterdir()) == []


def test_check_output_path_names_the_problem(tmp_path):
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    assert check_output_path(tmp_path / "new" / "deeper" / "out.json", "--out") == (
        tmp_path / "new" / "deeper" / "out.json"
    )
    assert not (tmp_path / "new").exists()  # nothing created
    with pytest.raises(ValueError, match=r"--out must be a file path, got .*which is a folder"):
        check_output_path(tmp_path, "--out")
    with pytest.raises(ValueError, match=r"--json must be a file in a folder.*file\.txt' is not a folder"):
        check_output_path(regular / "sub" / "out.json", "--json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]  # the probe file is gone


@pytest.mark.skipif(sys.platform != "linux", reason="uses /proc, where no process may create files")
def test_check_output_path_unwritable_folder():
    with pytest.raises(ValueError, match=r"--out: cannot create files in '/proc'"):
        check_output_path("/proc/bamco_fast_missing/out.json", "--out")


# ---- check-splits ----------------------------------------------------------------------------------


def _slake_root(tmp_path):
    root = make_slake_copy(
        tmp_path / "slake",
        [
            slake_entry(0, "xmlab0/source.jpg", "Which organ?", "Lung"),
            slake_entry(1, "xmlab0/source.jpg", "哪个器官?", "肺", lang="zh"),
        ],
        images=("xmlab0/source.jpg", "xmlab1/source.jpg"),
    )
    make_slake_copy(root, [slake_entry(2, "xmlab1/source.jpg", "What modality?", "CT")], split="validate")
    return root


def test_check_splits_json_output_is_checked_first(tmp_path, capsys, umask_022):
    root = _slake_root(tmp_path)
    argv = ["check-splits", "--dataset", "slake", "--splits", "train", "validate"]
    # The output is checked before any split is read: the bad --root is never reached.
    assert data_main([*argv, "--root", str(tmp_path / "nothing"), "--json", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--json must be a file path" in err and "Traceback" not in err
    regular = tmp_path / "file.txt"
    regular.write_text("x")
    assert data_main([*argv, "--root", str(root), "--json", str(regular / "r.json")]) == 2
    assert "--json must be a file in a folder" in capsys.readouterr().err
    report = tmp_path / "report.json"
    assert data_main([*argv, "--root", str(root), "--json", str(report)]) == 0
    assert _mode(report) == 0o644 and json.loads(report.read_text())[0]["a"] == "train"


def test_check_splits_refuses_unknown_language_and_empty_splits(tmp_path, capsys):
    root = _slake_root(tmp_path)
    argv = ["check-splits", "--dataset", "slake", "--root", str(root), "--splits", "train", "validate"]
    assert data_main([*argv, "--lang", "xx"]) == 2
    assert "--lang for slake must be one of ['en', 'zh', 'all'], got 'xx'" in capsys.readouterr().err
    assert data_main([*argv, "--lang", "zh"]) == 2  # validate has no Chinese question
    assert "no question in language 'zh'" in capsys.readouterr().err
    make_slake_copy(root, [], split="validate")
    assert data_main(argv) == 2
    assert "split 'validate' of slake" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"lang for vqa-rad must be one of \['en'\] or None"):
        load_split("vqa-rad", tmp_path, "train", lang="zh")


# ---- Slake: field types ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [("answer", None, "answer=None (NoneType)"), ("question", 12345, "question=12345 (int)")],
)
def test_slake_non_string_fields_are_malformed(tmp_path, field, value, shown):
    good = slake_entry(0, "xmlab0/source.jpg", "Which organ?", "Lung")
    bad = {**slake_entry(1, "xmlab0/source.jpg", "Which side?", "Left"), field: value}
    root = make_slake_copy(tmp_path, [good, bad], images=("xmlab0/source.jpg",))
    with pytest.raises(DataFormatError, match=re.escape(f"entry 1: expected string fields, got {shown}")):
        read_slake(root, "train")
    log = SkipLog()
    records = read_slake(root, "train", skip_log=log)
    assert [r.answer for r in records] == ["Lung"] and log.counts == {"malformed entry": 1}


def test_pathvqa_null_answer_is_malformed(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(png_bytes(1))
    write_json(tmp_path / "train.json", [{"image": "a.jpg", "question": "q?", "answer": None}])
    with pytest.raises(DataFormatError, match=r"entry 0: expected string fields, got answer=None"):
        read_pathvqa(tmp_path, "train")


def test_vqa_rad_numeric_answers_are_text_and_null_is_malformed(tmp_path):
    from bamco_fast.data import read_vqa_rad

    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "synpic1.jpg").write_bytes(png_bytes(1))
    rows = [
        {"image_name": "synpic1.jpg", "question": "How many ribs?", "answer": 4},
        {"image_name": "synpic1.jpg", "question": "Is it normal?", "answer": None},
    ]
    write_json(tmp_path / "train.json", rows)
    with pytest.raises(DataFormatError, match=re.escape("entry 1: expected string fields, got answer=None")):
        read_vqa_rad(tmp_path, "train")
    records = read_vqa_rad(tmp_path, "train", skip_log=SkipLog())
    assert [(r.question, r.answer) for r in records] == [("How many ribs?", "4")]


# ---- PathVQA: Windows-style paths relative to root/images or root ---------------------------------------


def test_pathvqa_windows_paths_relative_to_images_or_root(tmp_path):
    for rel in ("images/train/a.jpg", "images/b.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(png_bytes(len(rel)))
    rows = [
        {
            "image_path": "images\\train\\a.jpg",
            "question": "is it?",
            "answer": "yes",
            "question_type": "YESNO",
        },
        {"image_path": "b.jpg", "question": "what?", "answer": "gland"},  # relative to root/images
        {"image_path": "images\\missing.jpg", "question": "q?", "answer": "no"},
    ]
    write_json(tmp_path / "train.json", rows)
    with pytest.raises(MissingFileError) as info:
        read_pathvqa(tmp_path, "train")
    message = str(info.value)
    assert str(tmp_path / "images" / "images" / "missing.jpg") in message
    assert str(tmp_path / "images" / "missing.jpg") in message
    records = read_pathvqa(tmp_path, "train", skip_log=SkipLog())
    assert [r.image_name for r in records] == ["images/train/a.jpg", "b.jpg"]
    assert [r.image_path for r in records] == [tmp_path / "images/train/a.jpg", tmp_path / "images/b.jpg"]
    assert records[0].extra == {"question_type": "YESNO", "answer_type_source": "derived"}
    assert [r.answer_type for r in records] == ["CLOSED", "OPEN"]


def test_pathvqa_real_train_file_reads_as_it_is():
    root = shared("pathvqa")
    raw = json.loads((root / "train.json").read_text(encoding="utf-8"))
    assert any("\\" in row["image_path"] for row in raw)  # the dump's Windows-style paths
    train = load_split("pathvqa", root, "train", val_fraction=0)
    assert len(train) == len(raw) == 3360
    assert len({r.image_name for r in train}) == 450
    assert all(r.image_path.is_file() for r in train)
    assert [(r.question, r.answer, r.answer_type) for r in train] == [
        (row["question"], row["answer"].strip(), row["answer_type"]) for row in raw
    ]
    text_only = load_split("pathvqa", root, "train", val_fraction=0, check_images=False)
    assert [r.image_path for r in text_only] == [r.image_path for r in train]
    carved_train = load_split("pathvqa", root, "train")
    val = load_split("pathvqa", root, "validate")
    assert len(carved_train) + len(val) == 3360 and {r.split for r in val} == {"validate"}
    assert len({r.image_name for r in val}) == 45  # 10% of 450 images
    assert not {r.image_name for r in carved_train} & {r.image_name for r in val}


# ---- docs --------------------------------------------------------------------------------------------


def test_data_package_dependencies_are_documented_as_they_are():
    """The data modules import only the standard library (pyarrow lazily); the package import brings torch."""
    import ast

    import bamco_fast.data

    folder = REPO_ROOT / "bamco_fast" / "data"
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module-level imports only: pyarrow is imported inside functions
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module or ""]
            else:
                continue
            outside = [n for n in names if n.split(".")[0] not in sys.stdlib_module_names]
            assert not outside, f"{path.name} imports {outside} at module level"
    docs = (REPO_ROOT / "docs" / "data_and_knowledge.md").read_text(encoding="utf-8")
    for text in (docs, bamco_fast.data.__doc__):
        assert "needs only the standard library" not in text and "Only the standard library" not in text
        assert "imports torch" in text
