"""Loading the authors' released knowledge-space checkpoints (``<Dataset>_KnowledgeSpace.pt``).

The published model (official_code_notes.md §2.4, §2.8) stores, under ``checkpoint["state_dict"]``:
``model.visual.*`` / ``model.text.*`` (the frozen BiomedCLIP towers), ``model.logit_scale`` and
``logit_scale`` (unused scalars), ``GLIMS.*`` (the intra-class encoder), ``head.{0,1,3}.*`` (text head),
``head_fc.{0,1,3}.*`` (prototype head) and ``fc.weight`` of shape (2D, C) = [1024, C] (cosine classifier).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .knowledge_space import KnowledgeSpace


@dataclass
class OfficialKnowledgeSpaceReport:
    """Outcome of :meth:`KnowledgeSpace.load_official_state_dict` (key names as in the checkpoint).

    Attributes:
        loaded_keys: published keys copied into this model.
        missing_keys: parameters of this model (our names) that the checkpoint did not provide.
        unexpected_keys: published keys that map to nothing here.
        ignored_keys: keys deliberately not loaded: the tower weights unless ``load_towers`` (the
            released towers are BiomedCLIP's, frozen), the unused ``logit_scale`` scalars, and encoder
            biases that cancel in the next normalisation.
        notes: remarks, e.g. a layout that does not match released weights.
    """

    loaded_keys: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)
    ignored_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _checkpoint_source(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The checkpoint's tensors by key: ``checkpoint["state_dict"]`` unwrapped, ``module.`` prefixes stripped."""
    if "state_dict" in state_dict and isinstance(state_dict["state_dict"], Mapping):
        state_dict = state_dict["state_dict"]
    return {(k[len("module.") :] if k.startswith("module.") else k): v for k, v in state_dict.items()}


def _check_class_count(ks: KnowledgeSpace, source: Mapping[str, torch.Tensor]) -> None:
    """Raise ``ValueError`` when the checkpoint's ``fc.weight`` (2D, C) is not for ``ks.num_classes`` classes."""
    if "fc.weight" in source:
        w = source["fc.weight"]
        if w.dim() != 2 or w.shape[1] != ks.num_classes:
            raise ValueError(
                f"load_official_state_dict: the checkpoint's fc.weight has shape {tuple(w.shape)}, "
                f"i.e. {w.shape[-1]} classes; this knowledge space has {ks.num_classes} classes "
                f"(expected ({2 * ks.config.embed_dim}, {ks.num_classes}))"
            )


def _sort_keys(
    source: Mapping[str, torch.Tensor], load_towers: bool, report: OfficialKnowledgeSpaceReport
) -> tuple[dict[str, torch.Tensor], dict[str, str], dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Split the checkpoint into key families.

    Returns ``(ours, published, glims, tower_state)``: head and classifier tensors under our parameter
    names, our name -> checkpoint key, the ``GLIMS.*`` tensors (prefix stripped) and, with
    ``load_towers``, the ``model.visual.*`` / ``model.text.*`` tensors (``model.`` stripped). Ignored and
    unexpected keys are added to ``report``.
    """
    ours: dict[str, torch.Tensor] = {}
    published: dict[str, str] = {}  # our parameter name -> checkpoint key
    head_map = {"head": "text_head", "head_fc": "prototype_head"}
    glims = {k[len("GLIMS.") :]: v for k, v in source.items() if k.startswith("GLIMS.")}
    tower_state = {}
    for key, value in source.items():
        if key.startswith("GLIMS."):
            continue
        first, _, rest = key.partition(".")
        if first in head_map and rest.split(".")[0] in ("0", "1", "3"):
            ours[f"{head_map[first]}.{rest}"] = value
            published[f"{head_map[first]}.{rest}"] = key
        elif key == "fc.weight":
            ours["classifier.weight"] = value
            published["classifier.weight"] = key
        elif key in ("logit_scale", "model.logit_scale"):
            report.ignored_keys.append(key)
        elif key.startswith(("model.visual.", "model.text.")):
            if load_towers:
                tower_state[key[len("model.") :]] = value
            else:
                report.ignored_keys.append(key)
        else:
            report.unexpected_keys.append(key)
    return ours, published, glims, tower_state


def _check_heads(
    ks: KnowledgeSpace,
    ours: Mapping[str, torch.Tensor],
    published: Mapping[str, str],
    report: OfficialKnowledgeSpaceReport,
) -> dict[str, torch.nn.Parameter]:
    """Check the head and classifier shapes, record loaded / missing / unexpected keys; ``ks``'s parameters."""
    own = dict(ks.named_parameters())
    for name, value in ours.items():
        if name not in own:
            report.unexpected_keys.append(published[name])
            continue
        report.loaded_keys.append(published[name])
        if tuple(value.shape) != tuple(own[name].shape):
            raise ValueError(
                f"load_official_state_dict: {published[name]} ({name} here) needs shape {tuple(own[name].shape)}, "
                f"the checkpoint has {tuple(value.shape)}"
            )
    heads = ("text_head.", "prototype_head.", "classifier.")
    report.missing_keys += sorted(n for n in own if n.startswith(heads) and n not in ours)
    return own


def _load_intra_copy(
    ks: KnowledgeSpace, glims: Mapping[str, torch.Tensor], report: OfficialKnowledgeSpaceReport
) -> torch.nn.Module:
    """A copy of ``ks.intra_encoder`` holding the ``GLIMS.*`` weights (``ks`` itself is untouched)."""
    encoder = copy.deepcopy(ks.intra_encoder)
    enc = encoder.load_official_state_dict(glims, strict=False)
    report.missing_keys += [f"intra_encoder.{k}" for k in enc.missing_keys]
    report.unexpected_keys += [f"GLIMS.{k}" for k in enc.unexpected_keys]
    report.ignored_keys += [f"GLIMS.{k}" for k in enc.ignored_keys]
    report.loaded_keys += sorted(
        f"GLIMS.{k}" for k in glims if k not in enc.unexpected_keys and k not in enc.ignored_keys
    )
    return encoder


def _check_towers(
    ks: KnowledgeSpace, tower_state: Mapping[str, torch.Tensor], report: OfficialKnowledgeSpaceReport
) -> None:
    """Check the tower tensors' shapes against ``ks.towers.clip`` and record their keys in ``report``."""
    clip_state = ks.towers.clip.state_dict()
    clip_keys = {k for k in clip_state if k.startswith(("visual.", "text."))}
    report.missing_keys += sorted(f"towers.clip.{k}" for k in clip_keys - set(tower_state))
    report.unexpected_keys += sorted(f"model.{k}" for k in set(tower_state) - clip_keys)
    for k in set(tower_state) & clip_keys:
        if tuple(tower_state[k].shape) != tuple(clip_state[k].shape):
            raise ValueError(
                f"load_official_state_dict: model.{k} has shape {tuple(tower_state[k].shape)}, "
                f"the towers need {tuple(clip_state[k].shape)}"
            )
    report.loaded_keys += sorted(f"model.{k}" for k in set(tower_state) & clip_keys)


def _finish_report(report: OfficialKnowledgeSpaceReport, strict: bool) -> None:
    """Sort and de-duplicate the key lists; with ``strict``, raise ``KeyError`` on missing or unexpected keys."""
    for name in ("loaded_keys", "missing_keys", "unexpected_keys", "ignored_keys"):
        setattr(report, name, sorted(set(getattr(report, name))))
    if strict and (report.missing_keys or report.unexpected_keys):
        raise KeyError(
            f"load_official_state_dict: missing keys {report.missing_keys[:10]} "
            f"({len(report.missing_keys)} in all), unexpected keys {report.unexpected_keys[:10]} "
            f"({len(report.unexpected_keys)} in all)"
        )


def _copy_weights(
    ks: KnowledgeSpace,
    own: Mapping[str, torch.nn.Parameter],
    ours: Mapping[str, torch.Tensor],
    encoder: torch.nn.Module,
    tower_state: Mapping[str, torch.Tensor],
) -> None:
    """Copy the checked weights into ``ks`` (heads, classifier, intra encoder, towers when given)."""
    with torch.no_grad():
        for name, value in ours.items():
            if name in own:
                own[name].copy_(value)
        ks.intra_encoder.load_state_dict(encoder.state_dict())
        if tower_state:
            ks.towers.clip.load_state_dict(
                {k: v for k, v in tower_state.items() if k in ks.towers.clip.state_dict()}, strict=False
            )


def load_official_knowledge_space(
    ks: KnowledgeSpace,
    state_dict: Mapping[str, torch.Tensor],
    *,
    load_towers: bool = False,
    strict: bool = True,
) -> OfficialKnowledgeSpaceReport:
    """Load published knowledge-space weights into ``ks``.

    Key families (``module.`` prefixes are stripped): ``head.{0,1,3}.*`` -> text head,
    ``head_fc.{0,1,3}.*`` -> prototype head, ``fc.weight`` (2D, C) -> classifier, ``GLIMS.*`` -> intra
    encoder (:meth:`bamco_fast.IntraClassEncoder.load_official_state_dict`), ``model.visual.*`` /
    ``model.text.*`` -> towers only when ``load_towers`` (else ignored: the released towers are the
    frozen BiomedCLIP), ``logit_scale`` / ``model.logit_scale`` ignored (unused).

    Nothing is modified unless every check passes. Released weights need ``intra_layout="official"``
    (a note is added, and warned, otherwise).

    Args:
        ks: the knowledge space to fill (its class count must match the checkpoint's).
        state_dict: ``checkpoint["state_dict"]`` or the whole checkpoint dict.
        load_towers: also copy ``model.visual.*`` / ``model.text.*`` into ``ks.towers``.
        strict: raise ``KeyError`` when keys are missing or unexpected (before loading anything).

    Raises:
        ValueError: a checkpoint of another class count, or a tensor of the wrong shape (named).
        KeyError: with ``strict``, missing or unexpected keys (listed).
    """
    source = _checkpoint_source(state_dict)
    report = OfficialKnowledgeSpaceReport()
    _check_class_count(ks, source)
    ours, published, glims, tower_state = _sort_keys(source, load_towers, report)
    own = _check_heads(ks, ours, published, report)
    encoder = _load_intra_copy(ks, glims, report)
    if tower_state:
        _check_towers(ks, tower_state, report)
    if ks.config.intra_layout != "official" and glims:
        report.notes.append(
            "intra_layout is 'channels': released GLIMS weights were trained on the 'official' layout "
            "(memory reinterpretation of the image stack); use intra_layout='official' to reproduce them"
        )
    _finish_report(report, strict)
    _copy_weights(ks, own, ours, encoder, tower_state)
    for note in report.notes:
        warnings.warn(note, stacklevel=3)
    return report
