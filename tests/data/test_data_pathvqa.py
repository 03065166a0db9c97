import pytest
from helpers_data import png_bytes, write_json

from bamco_fast.data import DataFormatError, LayoutError, MissingFileError, SkipLog, load_split, read_pathvqa


def _write_parquet(path, rows):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table(
        {
            "image": pa.array([{"bytes": b, "path": None} for b, _, _ in rows], type=image_type),
            "question": [q for _, q, _ in rows],
            "answer": [a for _, _, a in rows],
        }
    )
    pq.write_table(table, path)


def test_hf_parquet_layout_extracts_images_once(tmp_path):
    img_a, img_b = png_bytes(10), png_bytes(200)
    _write_parquet(
        tmp_path / "data" / "train-00000-of-00002.parquet",
        [(img_a, "what is this?", "gland"), (img_a, "is it benign?", "yes")],
    )
    _write_parquet(tmp_path / "data" / "train-00001-of-00002.parquet", [(img_b, "what organ?", "liver")])
    _write_parquet(tmp_path / "data" / "validation-00000-of-00001.parquet", [(img_b, "q?", "no")])
    _write_parquet(tmp_path / "data" / "test-00000-of-00001.parquet", [(img_a, "q?", "no")])
    train = read_pathvqa(tmp_path, "train")
    assert [r.answer for r in train] == ["gland", "yes", "liver"]
    assert [r.answer_type for r in train] == ["OPEN", "CLOSED", "OPEN"]
    assert train[0].image_name == train[1].image_name != train[2].image_name
    assert train[0].image_path.read_bytes() == img_a and train[0].image_name.endswith(".png")
    assert len(list((tmp_path / "images").iterdir())) == 2
    val = load_split("pathvqa", tmp_path, "validate")  # native validation split, not carved
    assert [r.answer for r in val] == ["no"] and val[0].split == "validate"


def test_hf_parquet_missing_columns(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    (tmp_path / "data").mkdir()
    pq.write_table(pa.table({"question": ["q"]}), tmp_path / "data" / "train-0.parquet")
    with pytest.raises(DataFormatError, match=r"columns \['answer', 'image'\] missing"):
        read_pathvqa(tmp_path, "train")


def test_json_layout_with_images_and_carving(tmp_path):
    (tmp_path / "images").mkdir()
    for i in range(4):
        (tmp_path / "images" / f"img{i}.jpg").write_bytes(png_bytes(i))
    rows = [
        {"image": f"img{i % 4}.jpg", "question": f"q{i}?", "answer": "yes" if i % 2 else "tumor"}
        for i in range(8)
    ]
    write_json(tmp_path / "train.json", rows)
    (tmp_path / "test.jsonl").write_text(
        '{"image_name": "img0.jpg", "question": "q", "answer": "x", "answer_type": "open"}\n'
    )
    assert [r.answer_type for r in read_pathvqa(tmp_path, "test")] == ["OPEN"]
    train = load_split("pathvqa", tmp_path, "train", val_fraction=0.25)
    val = load_split("pathvqa", tmp_path, "validate", val_fraction=0.25)
    assert len(train) + len(val) == 8 and len({r.image_name for r in val}) == 1
    assert not {r.image_name for r in train} & {r.image_name for r in val}


def test_json_layout_bad_input(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "train.jsonl").write_text('{"image": "a.jpg", "question": "q", "answer": "a"}\n{broken\n')
    with pytest.raises(DataFormatError) as info:
        read_pathvqa(tmp_path, "train")
    assert info.value.line == 2
    (tmp_path / "train.jsonl").write_text('{"image": "a.jpg", "question": "q", "answer": "a"}\n')
    with pytest.raises(MissingFileError, match=r"a\.jpg"):
        read_pathvqa(tmp_path, "train")
    log = SkipLog()
    assert read_pathvqa(tmp_path, "train", skip_log=log) == [] and log.total == 1


def test_unknown_pathvqa_layout(tmp_path):
    with pytest.raises(LayoutError, match="unknown PathVQA layout"):
        read_pathvqa(tmp_path, "train")
