"""Texts to train a random-weight folder's tokenizer on: a dataset's training questions and answers, or a
text file's lines.

A *source* is one of:

* ``PATH`` to a text file: every non-blank line (UTF-8) is one text;
* ``PATH`` to a dataset copy (Slake, VQA-RAD or PathVQA, any layout :func:`bamco_fast.data.load_split`
  reads): the questions and answers of its training split, in record order (question, then answer);
  English questions only for Slake, and for a copy without a validation split the part of train that
  remains after carving one (``load_split``'s defaults). The dataset is recognised from the folder
  (:func:`detect_dataset`);
* ``DATASET=PATH`` to name the dataset explicitly (``slake=...``, ``vqa-rad=...``, ``pathvqa=...``).

Blank texts (an empty answer) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["TextSource", "demo_texts", "detect_dataset", "read_texts"]


@dataclass(frozen=True)
class TextSource:
    """Texts read from one source, and a short description of where they came from."""

    texts: tuple[str, ...]
    description: str


def detect_dataset(root: Path | str) -> str:
    """Which dataset (``"slake"``, ``"vqa-rad"``, ``"pathvqa"``) the folder ``root`` holds.

    Slake: an ``imgs/`` folder next to ``train.json``; VQA-RAD: its official release files or the MEVF
    split files; otherwise the folder name (``slake``, ``vqa_rad``/``vqa-rad``, ``pathvqa``). Raises
    ValueError when none applies (a ``train.json`` alone fits several datasets: write ``DATASET=PATH``).
    """
    from ..data import DATASETS
    from ..data.errors import LayoutError
    from ..data.slake import slake_has_split
    from ..data.vqa_rad import detect_vqa_rad_layout

    root = Path(root)
    if (root / "imgs").is_dir() and slake_has_split(root, "train"):
        return "slake"
    try:
        if detect_vqa_rad_layout(root) in ("official", "mevf"):
            return "vqa-rad"
    except LayoutError:
        pass
    name = root.absolute().name.lower().replace("-", "").replace("_", "")
    for dataset in DATASETS:
        if dataset.replace("-", "") in name:
            return dataset
    raise ValueError(
        f"cannot tell which dataset {str(root)!r} holds (expected a Slake, VQA-RAD or PathVQA copy, or a "
        f"folder named after one); write DATASET=PATH with DATASET one of {list(DATASETS)}"
    )


def _dataset_texts(dataset: str, root: Path) -> list[str]:
    from ..data import load_split

    texts: list[str] = []
    for record in load_split(dataset, root, "train", check_images=False):
        texts += [text for text in (record.question, record.answer) if text.strip()]
    return texts


def read_texts(source: str | Path) -> TextSource:
    """The texts of ``source`` (see the module docstring).

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: an unknown ``DATASET=`` prefix, a folder that is no recognisable dataset, a dataset
            copy that cannot be read (:class:`bamco_fast.data.DataError`), or no text at all.
    """
    from ..data import DATASETS

    spec = str(source)
    dataset, _, rest = spec.partition("=")
    if rest and dataset in DATASETS:
        path = Path(rest)
    else:
        dataset, path = "", Path(spec)
    if not path.exists():
        raise FileNotFoundError(f"expected a text file or a dataset folder, got {spec!r} (no such path)")
    if path.is_dir():
        dataset = dataset or detect_dataset(path)
        texts = _dataset_texts(dataset, path)
        description = f"{dataset} train questions and answers in {path}"
    elif dataset:
        raise ValueError(f"{spec!r}: {dataset}= needs a dataset folder, got a file")
    else:
        with path.open(encoding="utf-8") as handle:
            texts = [line.rstrip("\r\n") for line in handle if line.strip()]
        description = f"lines of {path}"
    if not texts:
        raise ValueError(f"{spec!r}: no texts found ({description})")
    return TextSource(tuple(texts), description)


def demo_texts() -> TextSource:
    """The training questions and answers of the packaged demo data (a VQA-RAD subset): always present."""
    from ..demo_data import demo_paths

    root = demo_paths().vqa_root
    return TextSource(
        tuple(_dataset_texts("vqa-rad", root)), "vqa-rad train questions and answers of the demo data"
    )
