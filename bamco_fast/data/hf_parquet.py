"""Reader for Hugging Face parquet exports (``flaviagiammarino/path-vqa``, ``flaviagiammarino/vqa-rad``).

Layout (``root`` is the dataset repository folder)::

    root/data/train-00000-of-00003.parquet     (also accepted: root/<split>-*.parquet,
    root/data/validation-00000-of-00001.parquet  root/data/<split>/*.parquet, root/<split>/*.parquet)
    root/data/test-00000-of-00001.parquet

Columns: ``image`` (a struct ``{bytes, path}`` as written by ``datasets``, or plain bytes),
``question``, ``answer``. Rows are read in file order, batch by batch (a split never has to fit in
memory). Image bytes are written once to ``extract_dir`` under a content-addressed name
(``<sha1[:16]>.jpg|.png``): identical pictures get the same name, so image-level split checks and
knowledge files see one image, not one per row.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .common import handle_problem
from .entries import EntryReader
from .errors import DataFormatError, LayoutError, MissingFileError, SkipLog
from .record import VQARecord

__all__ = ["find_parquet_files", "has_parquet_layout", "read_hf_parquet"]

_SPLIT_NAMES = {"train": ("train",), "validate": ("validation", "validate", "val"), "test": ("test",)}


def _require_pyarrow():
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading parquet files needs pyarrow: pip install bamco_fast[knowledge] (or pip install pyarrow)"
        ) from exc
    return pq


def find_parquet_files(root: Path, split: str) -> list[Path]:
    """Parquet shards of ``split`` under ``root`` (sorted), or an empty list."""
    root = Path(root)
    for name in _SPLIT_NAMES[split]:
        for pattern in (
            f"data/{name}-*.parquet",
            f"{name}-*.parquet",
            f"data/{name}/*.parquet",
            f"{name}/*.parquet",
        ):
            files = sorted(root.glob(pattern))
            if files:
                return files
    return []


def has_parquet_layout(root: Path) -> bool:
    return any(find_parquet_files(root, split) for split in _SPLIT_NAMES)


def _image_suffix(data: bytes, declared: str | None) -> str | None:
    if data[:3] == b"\xff\xd8\xff":
        return ".jpg"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if declared and Path(declared).suffix.lower() in {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}:
        return Path(declared).suffix.lower()
    return None


def _write_image(folder: Path, name: str, data: bytes) -> Path:
    target = folder / name
    if target.is_file() and target.stat().st_size == len(data):
        return target
    tmp = folder / f".{name}.{os.getpid()}.tmp"
    tmp.write_bytes(data)
    os.replace(tmp, target)
    return target


def _split_files(root: Path, split: str) -> list[Path]:
    """The parquet shards of ``split`` (``LayoutError`` when ``root`` holds no parquet export at all,
    ``MissingFileError`` when it holds none for this split)."""
    files = find_parquet_files(root, split)
    if not files:
        if not has_parquet_layout(root):
            raise LayoutError(
                "no Hugging Face parquet files found (expected data/<split>-*.parquet)", path=root
            )
        raise MissingFileError(
            f"no parquet files for split {split!r} (expected data/{_SPLIT_NAMES[split][0]}-*.parquet)",
            path=root,
        )
    return files


def _open_shard(pq, path: Path):
    """``pyarrow.parquet.ParquetFile`` of ``path``, checked to hold the image, question and answer columns."""
    try:
        handle = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several exception types for corrupt files
        raise DataFormatError(f"not a readable parquet file ({exc})", path=path) from None
    names = set(handle.schema_arrow.names)
    missing = {"image", "question", "answer"} - names
    if missing:
        raise DataFormatError(
            f"parquet columns {sorted(missing)} missing; expected image, question, answer; got {sorted(names)}",
            path=path,
        )
    return handle


def _row_record(
    item: dict,
    index: int,
    *,
    path: Path,
    split: str,
    folder: Path,
    reader: EntryReader,
    skip_log: SkipLog | None,
) -> VQARecord | None:
    """The record of row ``index`` (0-based over the split), its image written to ``folder``; ``None`` for
    a row skipped (no image bytes, an image neither JPEG nor PNG, a bad entry) under ``skip_log``."""
    image = item["image"]
    data, declared = (image.get("bytes"), image.get("path")) if isinstance(image, dict) else (image, None)
    if not data:
        handle_problem(
            MissingFileError(f"row {index}: no image bytes", path=path),
            "missing image",
            skip_log,
        )
        return None
    suffix = _image_suffix(data, declared)
    if suffix is None:
        handle_problem(
            DataFormatError(f"row {index}: image bytes are neither JPEG nor PNG", path=path),
            "malformed entry",
            skip_log,
        )
        return None
    name = hashlib.sha1(data).hexdigest()[:16] + suffix
    image_path = _write_image(folder, name, data)
    texts = {k: None if item[k] is None else str(item[k]) for k in ("question", "answer")}
    where = f"row {index}"
    entry = reader.entry(where, {**texts, "image": name}, ("image", "question", "answer"))
    return entry and reader.record(
        where,
        entry,
        image_key="image",
        qid=f"{split}-{index}",
        extra={"source_file": path.name},
        image_path=image_path.resolve(),
    )


def read_hf_parquet(
    root: Path,
    split: str,
    *,
    dataset: str,
    extract_dir: Path | None = None,
    skip_log: SkipLog | None = None,
) -> list[VQARecord]:
    """Read one split of a Hugging Face parquet export, extracting images to ``extract_dir``.

    ``extract_dir`` defaults to ``root/images``.
    """
    pq = _require_pyarrow()
    root = Path(root)
    if split not in _SPLIT_NAMES:
        raise ValueError(f"split must be one of {sorted(_SPLIT_NAMES)}, got {split!r}")
    files = _split_files(root, split)
    folder = Path(extract_dir) if extract_dir is not None else root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    records: list[VQARecord] = []
    row = 0
    for path in files:
        handle = _open_shard(pq, path)
        reader = EntryReader(dataset, split, path, None, skip_log)
        for batch in handle.iter_batches(batch_size=256, columns=["image", "question", "answer"]):
            for item in batch.to_pylist():
                row += 1
                record = _row_record(
                    item, row - 1, path=path, split=split, folder=folder, reader=reader, skip_log=skip_log
                )
                if record:
                    records.append(record)
    return records
