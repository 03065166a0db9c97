"""The configuration of a knowledge space (:class:`KnowledgeSpaceConfig`): shapes, trainability and loss
weights, with the paper's (published code) values as defaults; it round-trips through a JSON dict."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .towers import BIOMEDCLIP, check_tower_name

__all__ = ["KnowledgeSpaceConfig"]


@dataclass
class KnowledgeSpaceConfig:
    """Shape and trainability of a knowledge space; defaults are the paper's (published code) values.

    Attributes:
        tower: open_clip name of the image/text towers (``hf-hub:`` or ``local-dir:``).
        embed_dim: D, width of every embedding; must equal the towers' ``embed_dim`` (f1 has no projection).
        num_images: K, intra-class images per stack.
        intra_image_size: h = w of the intra-class images.
        feature_size: channels after the intra-class encoder's stem.
        intra_layout: ``"channels"`` (images along depth) or ``"official"`` (the published memory
            reinterpretation; needed for released weights). See :class:`bamco_fast.IntraClassEncoder`.
        intra_backend: backend of the encoder's depthwise blocks (``None`` = automatic).
        freeze_image_tower, freeze_text_tower: the towers get no gradient (True as published).
        train_text_head, train_intra_encoder, train_classifier, train_prototype_head: trainability of the
            four heads (all True as published).
        classifier_scale: NormedLinear scale s (30).
        temperature: BalSCL temperature (0.07).
        ce_weight, contrastive_weight: lambda and mu of the total loss (0.5, 0.5).
        logit_adjust_tau: strength of the logit adjustment (1.0).
    """

    tower: str = field(default=BIOMEDCLIP, metadata={"path": "local-dir"})
    embed_dim: int = 512
    num_images: int = 36
    intra_image_size: int = 84
    feature_size: int = 12
    intra_layout: str = "channels"
    intra_backend: str | None = None
    freeze_image_tower: bool = True
    freeze_text_tower: bool = True
    train_text_head: bool = True
    train_intra_encoder: bool = True
    train_classifier: bool = True
    train_prototype_head: bool = True
    classifier_scale: float = 30.0
    temperature: float = 0.07
    ce_weight: float = 0.5
    contrastive_weight: float = 0.5
    logit_adjust_tau: float = 1.0

    def __post_init__(self) -> None:
        check_tower_name(self.tower)
        for name in ("embed_dim", "num_images", "intra_image_size", "feature_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"KnowledgeSpaceConfig: {name} must be a positive int, got {value!r}")
        if self.intra_layout not in ("channels", "official"):
            raise ValueError(
                f"KnowledgeSpaceConfig: intra_layout must be 'channels' or 'official', got {self.intra_layout!r}"
            )
        for name in ("classifier_scale", "temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"KnowledgeSpaceConfig: {name} must be a number > 0, got {value!r}")
        for name in ("ce_weight", "contrastive_weight", "logit_adjust_tau"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float))
                or isinstance(value, bool)
                or not 0 <= value < float("inf")
            ):
                raise ValueError(f"KnowledgeSpaceConfig: {name} must be a finite number >= 0, got {value!r}")
        for f in dataclasses.fields(self):
            if f.type in ("bool", bool) and not isinstance(getattr(self, f.name), bool):
                raise ValueError(
                    f"KnowledgeSpaceConfig: {f.name} must be a bool, got {getattr(self, f.name)!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> KnowledgeSpaceConfig:
        """Build from a mapping; an unknown key is an error listing the valid ones."""
        valid = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"KnowledgeSpaceConfig: unknown keys {unknown}; valid keys are {valid}")
        return cls(**dict(values))
