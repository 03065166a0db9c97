"""The three splits of a VQA run, made honestly, and the leakage check that guards them.

Both training stages read the splits from here, with the same defaults (:data:`SPLIT_DEFAULTS`): the
VQA stage trains, selects and evaluates on them, and the pretraining stage holds out the images the VQA
stage selects on.

A run trains on ``train``, selects its checkpoint on ``validate`` only, and evaluates once on the
evaluation split. How each split is made, per dataset copy:

=============  ==========================================================================================
dataset        splits
=============  ==========================================================================================
Slake          train / validate / test as shipped. When the copy has no ``test.json`` (ours), the
               evaluation split is ``validate`` and model selection uses a validation split carved from
               train by image (``val_fraction``), so the evaluation split is never looked at before the end.
VQA-RAD        test as shipped; validation carved from train by image (the dataset has none).
PathVQA        the shipped splits when present; a copy with only train (ours) gets test and then
               validation carved from train by image (``test_fraction``, ``val_fraction``).
=============  ==========================================================================================

Carving is by image (:func:`bamco_fast.data.carve_validation`): a carved split shares no image with
the training split. :func:`check_leakage` then compares every pair of splits as ``python -m
bamco_fast.data check-splits`` does and raises :class:`LeakageError` naming each shared (image,
question) pair, so a leaking run never starts.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

from .errors import DataWarning, MissingSplitError
from .loading import has_native_validation, load_split
from .record import VQARecord, normalize_question
from .splits import carve_validation, overlap_report

__all__ = [
    "SPLIT_DEFAULTS",
    "LeakageError",
    "VQASplits",
    "check_leakage",
    "drop_leaked",
    "load_vqa_splits",
    "split_has_file",
]

#: The split settings of a VQA run unless its config says otherwise (both stages use them).
SPLIT_DEFAULTS: dict[str, object] = {
    "eval_split": "auto",
    "layout": "auto",
    "lang": "en",
    "val_fraction": 0.1,
    "test_fraction": 0.1,
    "seed": 0,
}


class LeakageError(ValueError):
    """Some (image, question) pair of a selection or evaluation split also occurs in another split."""


@dataclass
class VQASplits:
    """Records of one run: ``train`` (fitted), ``validate`` (selection only), ``evaluate`` (scored once).

    ``eval_split`` is the dataset split the ``evaluate`` records come from (``test`` or ``validate``);
    ``notes`` say in words how each split was made (printed at the start of a run, stored in its folder).
    """

    dataset: str
    train: list[VQARecord]
    validate: list[VQARecord]
    evaluate: list[VQARecord]
    eval_split: str
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict:
        def count(records: list[VQARecord]) -> dict:
            return {"qa": len(records), "images": len({r.image_name for r in records})}

        return {
            "dataset": self.dataset,
            "eval_split": self.eval_split,
            "train": count(self.train),
            "validate": count(self.validate),
            "evaluate": count(self.evaluate),
            "notes": list(self.notes),
        }


def split_has_file(dataset: str, root: Path, split: str, layout: str = "auto") -> bool:
    """Whether the copy at ``root`` ships ``split`` (``test`` is checked by trying to read it)."""
    if split == "validate":
        return has_native_validation(dataset, root, layout)
    try:
        load_split(dataset, root, split, layout=layout, lang=None, check_images=False)
    except MissingSplitError:
        return False
    return True


def _relabel(records: list[VQARecord], split: str) -> list[VQARecord]:
    return [
        r if r.split == split else replace(r, split=split, extra={**r.extra, "carved_from": r.split})
        for r in records
    ]


def load_vqa_splits(
    dataset: str,
    root: Path | str,
    *,
    eval_split: str = "auto",
    layout: str = "auto",
    lang: str | None = "en",
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
) -> VQASplits:
    """Read the train / selection / evaluation records of ``dataset`` (see the module docstring).

    ``eval_split``: ``"test"``, ``"validate"`` or ``"auto"`` (test when the copy has it or can carve it,
    else validate). Entries the readers leave out with a :class:`~bamco_fast.data.errors.DataWarning`
    (empty answers) are listed in the splits' ``notes``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        splits = _load_vqa_splits(dataset, root, eval_split, layout, lang, val_fraction, test_fraction, seed)
    splits.notes.extend(f"warning: {w.message}" for w in caught if issubclass(w.category, DataWarning))
    for w in caught:
        if not issubclass(w.category, DataWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return splits


def _load_vqa_splits(dataset, root, eval_split, layout, lang, val_fraction, test_fraction, seed) -> VQASplits:
    root = Path(root)
    if eval_split not in ("auto", "test", "validate"):
        raise ValueError(f"eval_split must be 'auto', 'test' or 'validate', got {eval_split!r}")
    if not root.is_dir():
        raise FileNotFoundError(f"data root for {dataset} not found: {root} (expected the dataset's folder)")
    kw = {"layout": layout, "lang": lang}
    notes: list[str] = []
    has_test = split_has_file(dataset, root, "test", layout)
    if dataset == "pathvqa" and not has_test and eval_split != "validate":
        full = load_split(dataset, root, "train", val_fraction=0, **kw)
        rest, test = carve_validation(full, fraction=test_fraction, seed=seed)
        train, val = carve_validation(rest, fraction=val_fraction, seed=seed)
        notes.append(
            f"{dataset}: the copy has only a train split; test ({test_fraction:.0%} of its images) and then "
            f"validation ({val_fraction:.0%} of the remaining images) carved from it by image, seed {seed}"
        )
        return VQASplits(dataset, train, _relabel(val, "validate"), _relabel(test, "test"), "test", notes)
    if eval_split == "auto":
        eval_split = "test" if has_test else "validate"
    if eval_split == "test":
        if not has_test:
            raise MissingSplitError(
                f"{dataset} at {root} has no test split; use eval_split='validate' (the run then selects "
                "on a validation split carved from train)"
            )
        train = load_split(dataset, root, "train", val_fraction=val_fraction, seed=seed, **kw)
        val = load_split(dataset, root, "validate", val_fraction=val_fraction, seed=seed, **kw)
        test = load_split(dataset, root, "test", **kw)
        native = has_native_validation(dataset, root, layout)
        notes.append(
            f"{dataset}: train on train, select on "
            + (
                "the shipped validation split"
                if native
                else f"validation carved from train by image ({val_fraction:.0%}, seed {seed})"
            )
            + ", evaluate once on test"
        )
        return VQASplits(dataset, train, val, test, "test", notes)
    # Evaluate on the shipped validation split: select on a validation split carved from train.
    evaluate = load_split(dataset, root, "validate", val_fraction=val_fraction, seed=seed, **kw)
    if has_native_validation(dataset, root, layout):
        full_train = load_split(dataset, root, "train", **kw)
    else:
        full_train = load_split(dataset, root, "train", val_fraction=val_fraction, seed=seed, **kw)
    train, val = carve_validation(full_train, fraction=val_fraction, seed=seed)
    notes.append(
        f"{dataset}: evaluation split is validate (no test split used); model selection on a validation "
        f"split carved from train by image ({val_fraction:.0%}, seed {seed}), so the evaluation split stays unseen"
    )
    return VQASplits(dataset, train, _relabel(val, "validate"), evaluate, "validate", notes)


def check_leakage(splits: VQASplits, *, max_examples: int = 5) -> list[str]:
    """Raise :class:`LeakageError` when any two splits share an (image, question) pair.

    Returns one line per split pair (the check-splits counts) when there is no leakage. The error
    names the split pair, the number of shared pairs and the first ``max_examples`` of them.
    """
    parts = {
        "train": splits.train,
        "validate": splits.validate,
        f"evaluate ({splits.eval_split})": splits.evaluate,
    }
    lines, problems = [], []
    for (a_name, a), (b_name, b) in itertools.combinations(parts.items(), 2):
        report = overlap_report(a_name, a, b_name, b)
        lines.append(
            f"{a_name} vs {b_name}: {report.image_questions} (image, question) pairs, "
            f"{report.questions} question texts, {report.images} images shared"
        )
        if report.leaks:
            seen = {(r.image_name, normalize_question(r.question)) for r in a}
            shared = [r for r in b if (r.image_name, normalize_question(r.question)) in seen]
            examples = "; ".join(f"qid {r.qid}: {r.image_name} {r.question!r}" for r in shared[:max_examples])
            problems.append(
                f"{a_name} -> {b_name}: {report.image_questions} (image, question) pair(s) shared, "
                f"{report.b_items_leaked} {b_name} item(s), e.g. {examples}"
            )
    if problems:
        raise LeakageError(
            f"question leakage between the splits of {splits.dataset} (as python -m bamco_fast.data "
            "check-splits reports it); refusing to start:\n  "
            + "\n  ".join(problems)
            + "\nUse a split without shared (image, question) pairs (e.g. VQA-RAD's Hugging Face order copy), "
            "or set data.drop_leaked=true to drop the shared items from the later split."
        )
    return lines


def drop_leaked(splits: VQASplits) -> tuple[VQASplits, int]:
    """Remove from ``validate`` and ``evaluate`` every item whose (image, question) occurs in an earlier split."""
    keys: set[tuple[str, str]] = set()

    def key(r: VQARecord) -> tuple[str, str]:
        return (r.image_name, normalize_question(r.question))

    keys.update(key(r) for r in splits.train)
    val = [r for r in splits.validate if key(r) not in keys]
    keys.update(key(r) for r in splits.validate)
    ev = [r for r in splits.evaluate if key(r) not in keys]
    dropped = len(splits.validate) - len(val) + len(splits.evaluate) - len(ev)
    out = replace(splits, validate=val, evaluate=ev, notes=[*splits.notes])
    if dropped:
        out.notes.append(
            f"dropped {dropped} validation/evaluation item(s) whose (image, question) occurs in an earlier split"
        )
    return out, dropped
