"""One entry point for every dataset, layout and split: :func:`load_split`.

``split`` is ``train``, ``validate`` or ``test``, or an expression like ``train+test[:300]``
(see :func:`bamco_fast.data.splits.parse_split_expr`).

Where a dataset copy has no validation split (VQA-RAD always; PathVQA JSON copies without one),
``validate`` is carved from train by image (``val_fraction``, ``seed``) and ``train`` is what
remains, so the two never share an image. ``val_fraction=0`` disables carving (``train`` is then
the whole official train split and ``validate`` is an error).
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .errors import DataWarning, LayoutError, SkipLog
from .hf_parquet import has_parquet_layout, read_hf_parquet
from .pathvqa import pathvqa_has_split, read_pathvqa
from .record import VQARecord
from .slake import read_slake, slake_has_split
from .splits import carve_validation, parse_split_expr
from .vqa_rad import detect_vqa_rad_layout, read_vqa_rad

__all__ = ["DATASETS", "LANGUAGES", "LAYOUTS", "has_native_validation", "load_split"]

DATASETS: tuple[str, ...] = ("slake", "vqa-rad", "pathvqa")
LAYOUTS: dict[str, tuple[str, ...]] = {
    "slake": ("auto", "official"),
    "vqa-rad": ("auto", "official", "mevf", "hf-order", "hf-parquet"),
    "pathvqa": ("auto", "hf-parquet", "json"),
}
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_SEED = 0


#: question languages of each dataset (``lang=None`` keeps them all)
LANGUAGES: dict[str, tuple[str, ...]] = {"slake": ("en", "zh"), "vqa-rad": ("en",), "pathvqa": ("en",)}


def _check_dataset(dataset: str, layout: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got {dataset!r}")
    if layout not in LAYOUTS[dataset]:
        raise ValueError(f"layout for {dataset} must be one of {list(LAYOUTS[dataset])}, got {layout!r}")


def _check_lang(dataset: str, lang: str | None) -> None:
    if lang is not None and lang not in LANGUAGES[dataset]:
        raise ValueError(
            f"lang for {dataset} must be one of {list(LANGUAGES[dataset])} or None (every language), "
            f"got {lang!r}"
        )


def has_native_validation(dataset: str, root: Path, layout: str = "auto") -> bool:
    """Whether the copy at ``root`` ships its own validation split."""
    _check_dataset(dataset, layout)
    if dataset == "slake":
        return slake_has_split(Path(root), "validate")
    if dataset == "pathvqa":
        return pathvqa_has_split(Path(root), "validate", layout)
    return False


def _read_native(dataset: str, root: Path, split: str, **kw) -> list[VQARecord]:
    lang, layout, image_dir = kw.pop("lang"), kw.pop("layout"), kw.pop("image_dir")
    if dataset == "slake":
        return read_slake(root, split, lang=lang, **kw)
    if dataset == "pathvqa":
        return read_pathvqa(root, split, layout=layout, image_dir=image_dir, **kw)
    if layout == "auto":
        try:
            layout = detect_vqa_rad_layout(root)
        except LayoutError:
            if not has_parquet_layout(root):
                raise
            layout = "hf-parquet"
    if layout == "hf-parquet":
        return read_hf_parquet(
            root, split, dataset="vqa-rad", extract_dir=image_dir, skip_log=kw.get("skip_log")
        )
    return read_vqa_rad(root, split, layout=layout, image_dir=image_dir, **kw)


def _read_one(dataset: str, root: Path, split: str, val_fraction: float, seed: int, **kw) -> list[VQARecord]:
    if split == "test" or has_native_validation(dataset, root, kw["layout"]):
        return _read_native(dataset, root, split, **kw)
    if val_fraction <= 0:
        if split == "validate":
            raise ValueError(
                f"{dataset} at {root} has no validation split and val_fraction=0 disables carving one"
            )
        return _read_native(dataset, root, split, **kw)
    train, val = carve_validation(
        _read_native(dataset, root, "train", **kw), fraction=val_fraction, seed=seed
    )
    part = train if split == "train" else val
    return [r if r.split == split else _with_split(r, split) for r in part]


def _with_split(record: VQARecord, split: str) -> VQARecord:
    from dataclasses import replace

    return replace(record, split=split, extra={**record.extra, "carved_from": "train"})


def load_split(
    dataset: str,
    root: Path | str,
    split: str,
    *,
    layout: str = "auto",
    image_dir: Path | str | None = None,
    lang: str | None = "en",
    val_fraction: float = DEFAULT_VAL_FRACTION,
    seed: int = DEFAULT_SEED,
    check_images: bool = True,
    skip_log: SkipLog | None = None,
) -> list[VQARecord]:
    """Read ``split`` of ``dataset`` from ``root`` (see the module docstring).

    ``lang`` must be one of the dataset's question languages (:data:`LANGUAGES`) or None. Without a
    ``skip_log`` every bad entry is an error, except an entry with an empty answer, which can be neither
    trained on nor scored: it is left out with a :class:`DataWarning` naming it (Slake's train.json has
    one). With a ``skip_log``, the problems it skips are counted there instead.
    """
    _check_dataset(dataset, layout)
    _check_lang(dataset, lang)
    root = Path(root)
    own_log = skip_log is None
    if own_log:
        skip_log = SkipLog(kinds=frozenset({"empty answer"}))
    records: list[VQARecord] = []
    for name, part in parse_split_expr(split):
        records.extend(
            _read_one(
                dataset,
                root,
                name,
                val_fraction,
                seed,
                lang=lang,
                layout=layout,
                image_dir=None if image_dir is None else Path(image_dir),
                check_images=check_images,
                skip_log=skip_log,
            )[part]
        )
    if own_log and skip_log.total:
        examples = "; ".join(skip_log.examples["empty answer"])
        warnings.warn(
            f"{dataset} {split}: left out {skip_log.total} entr{'y' if skip_log.total == 1 else 'ies'} with an "
            f"empty answer ({examples})",
            DataWarning,
            stacklevel=2,
        )
    return records
