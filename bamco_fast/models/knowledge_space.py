"""BaMCo's multimodal knowledge space (paper §2, Fig. 2): the model of the pretraining stage.

Given a reference image I (B, 3, S, S), a text (tokens (B, L)) and a stack of K intra-class images
V (B, K, 3, h, w), with D = ``embed_dim``:

    f1 = norm(image_tower(I))                         (B, D)  frozen BiomedCLIP ViT, no trainable projection
    f3 = norm(text_head(text_tower(T)))               (B, D)  frozen PubMedBERT -> Linear-LN-ReLU-Linear
    f2 = norm(intra_encoder(V))                       (B, D)  bamco_fast.IntraClassEncoder (GLIMS path)
    logits = NormedLinear([f1, f2])                   (B, C)  30 * cos(x, W[:, c]), W: (2D, C)
    prototypes = norm(prototype_head(W^T))            (C, D)  Linear(2D, D)-LN-ReLU-Linear

The training objective (:class:`bamco_fast.BaMCoObjective`, built by :meth:`KnowledgeSpace.objective`) is
``0.5 * CE(logits + log prior, y) + 0.5 * mean over pairs of {f1, f3, f2} of BalSCL(pair, prototypes)``.

Frozen towers run under ``torch.no_grad`` and stay in eval mode; their outputs may be cached and passed
as ``image_features`` / ``text_features`` (exact: the frozen towers are deterministic).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders import IntraClassEncoder
from ..losses import BaMCoObjective, NormedLinear
from .heads import PrototypeHead, TextHead
from .knowledge_space_config import KnowledgeSpaceConfig
from .knowledge_space_io import load_knowledge_space, save_knowledge_space
from .official import OfficialKnowledgeSpaceReport
from .towers import Towers, load_towers

__all__ = [
    "KnowledgeSpace",
    "KnowledgeSpaceConfig",
    "KnowledgeSpaceOutput",
    "OfficialKnowledgeSpaceReport",
]


@dataclass
class KnowledgeSpaceOutput:
    """Outputs of :meth:`KnowledgeSpace.forward`; a field is ``None`` when its input was not given.

    Attributes:
        image: (B, D) L2-normalised reference-image embeddings f1.
        text: (N, D) L2-normalised text embeddings f3 (N = B for training).
        intra: (B, D) L2-normalised intra-class embeddings f2.
        logits: (B, C) classifier logits on [f1, f2] (needs image and intra).
        prototypes: (C, D) L2-normalised class prototypes.
    """

    image: torch.Tensor | None
    text: torch.Tensor | None
    intra: torch.Tensor | None
    logits: torch.Tensor | None
    prototypes: torch.Tensor


def _check_class_names(class_names: Sequence[str]) -> list[str]:
    if isinstance(class_names, str) or not isinstance(class_names, Sequence) or len(class_names) == 0:
        raise ValueError(
            f"KnowledgeSpace: class_names must be a non-empty sequence of strings, got {class_names!r:.80}"
        )
    names = list(class_names)
    bad = [i for i, n in enumerate(names) if not isinstance(n, str) or not n.strip()]
    if bad:
        raise ValueError(
            f"KnowledgeSpace: class_names[{bad[0]}] must be a non-empty string, got {names[bad[0]]!r}"
        )
    seen: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in seen:
            raise ValueError(f"KnowledgeSpace: class_names has {name!r} twice (indices {seen[name]} and {i})")
        seen[name] = i
    return names


def _check_features(x: Any, name: str, width: int) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        got = f"dtype {x.dtype}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise TypeError(f"KnowledgeSpace: {name} must be a float tensor (N, {width}), got {got}")
    if x.dim() != 2 or x.shape[1] != width:
        raise ValueError(f"KnowledgeSpace: {name} must have shape (N, {width}), got {tuple(x.shape)}")
    return x


class KnowledgeSpace(nn.Module):
    """The BaMCo knowledge space: towers + text head + intra-class encoder + cosine classifier + prototypes.

    Args:
        config: :class:`KnowledgeSpaceConfig`.
        class_names: the C class (head-entity) names, distinct, in class-index order.
        towers: already loaded towers; default ``load_towers(config.tower)``. Their ``requires_grad``
            flags are set from the config (towers shared between models share them too).

    Attributes:
        towers (:class:`Towers`), text_head (:class:`TextHead`), intra_encoder
        (:class:`bamco_fast.IntraClassEncoder`), classifier (:class:`bamco_fast.NormedLinear`, weight (2D, C)),
        prototype_head (:class:`PrototypeHead`), class_names, num_classes, config.
    """

    def __init__(
        self, config: KnowledgeSpaceConfig, class_names: Sequence[str], towers: Towers | None = None
    ):
        super().__init__()
        if not isinstance(config, KnowledgeSpaceConfig):
            raise TypeError(
                f"KnowledgeSpace: config must be a KnowledgeSpaceConfig, got {type(config).__name__}"
            )
        self.config = config
        self.class_names = _check_class_names(class_names)
        self.num_classes = len(self.class_names)
        if towers is None:
            towers = load_towers(config.tower)
        elif not isinstance(towers, Towers):
            raise TypeError(
                f"KnowledgeSpace: towers must be a Towers (see load_towers), got {type(towers).__name__}"
            )
        if towers.embed_dim != config.embed_dim:
            raise ValueError(
                f"KnowledgeSpace: config.embed_dim ({config.embed_dim}) must equal the towers' embed_dim "
                f"({towers.embed_dim}, tower {towers.name!r}): the image embedding f1 has no trainable projection"
            )
        d = config.embed_dim
        self.towers = towers
        self.text_head = TextHead(towers.embed_dim, d)
        self.intra_encoder = IntraClassEncoder(
            in_channels=3,
            feature_size=config.feature_size,
            out_dim=d,
            num_images=config.num_images,
            image_size=config.intra_image_size,
            layout=config.intra_layout,
            backend=config.intra_backend,
        )
        self.classifier = NormedLinear(2 * d, self.num_classes, scale=config.classifier_scale)
        self.prototype_head = PrototypeHead(2 * d, d)
        self.apply_trainability()

    # ----------------------------------------------------------------------------------------- setup
    def apply_trainability(self) -> None:
        """Set ``requires_grad`` of every part from the config's freeze/train fields."""
        cfg = self.config
        parts = (
            (self.towers.clip.visual, not cfg.freeze_image_tower),
            (self.towers.clip.text, not cfg.freeze_text_tower),
            (self.text_head, cfg.train_text_head),
            (self.intra_encoder, cfg.train_intra_encoder),
            (self.classifier, cfg.train_classifier),
            (self.prototype_head, cfg.train_prototype_head),
        )
        for p in self.towers.parameters():
            p.requires_grad_(False)  # e.g. CLIP's own logit_scale: never used here
        for module, trainable in parts:
            for p in module.parameters():
                p.requires_grad_(trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> KnowledgeSpace:
        """As :meth:`nn.Module.train`, but frozen towers always stay in eval mode (no dropout)."""
        super().train(mode)
        if self.config.freeze_image_tower:
            self.towers.clip.visual.eval()
        if self.config.freeze_text_tower:
            self.towers.clip.text.eval()
        return self

    @property
    def device(self) -> torch.device:
        return self.classifier.weight.device

    def _image_grad(self):
        return torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_image_tower)

    def _text_grad(self):
        return torch.set_grad_enabled(torch.is_grad_enabled() and not self.config.freeze_text_tower)

    # ----------------------------------------------------------------------------- tower features
    def frozen_image_features(self, images: torch.Tensor) -> torch.Tensor:
        """Raw image-tower output (B, 3, S, S) -> (B, embed_dim), not normalised: what ``image_features``
        caches (valid as a cache only while ``freeze_image_tower``)."""
        with self._image_grad():
            return self.towers.encode_image(images)

    def frozen_text_features(
        self, texts: Sequence[str] | torch.Tensor, *, batch_size: int = 256
    ) -> torch.Tensor:
        """Raw text-tower output for strings or (N, L) tokens -> (N, embed_dim), not normalised: what
        ``text_features`` caches (valid as a cache only while ``freeze_text_tower``).

        Strings are tokenised and encoded ``batch_size`` at a time. Where the text tower masks its
        padding (``towers.pad_token_id``), strings are grouped by token count and each group is cut to
        its longest member: the same features up to float summation order (padding is masked), for a
        fraction of the cost when most strings are far shorter than the context (BiomedCLIP: 256).
        """
        with self._text_grad():
            if isinstance(texts, torch.Tensor):
                return self.towers.encode_text(texts.to(self.towers.device))
            tokens = self.towers.tokenize(texts)
            if tokens.shape[0] == 0:
                return torch.zeros(0, self.towers.embed_dim, device=self.towers.device)
            pad = self.towers.pad_token_id
            if pad is None:
                return torch.cat([self.towers.encode_text(t) for t in tokens.split(batch_size)])
            columns = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)
            lengths = ((tokens != pad) * columns).amax(dim=1).clamp_min(1)  # last non-padding column + 1
            order = torch.argsort(lengths, descending=True, stable=True)
            out = torch.empty(tokens.shape[0], self.towers.embed_dim, device=tokens.device)
            for rows in order.split(batch_size):
                width = int(lengths[rows[0]])
                out[rows] = self.towers.encode_text(tokens[rows, :width]).to(out.dtype)
            return out

    # --------------------------------------------------------------------------------- embeddings
    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """Reference images (B, 3, S, S) normalised float -> f1 (B, D), L2-normalised."""
        return F.normalize(self.frozen_image_features(images), dim=-1)

    def encode_text(self, texts: Sequence[str] | torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """Strings, or (N, L) int64 tokens -> f3 (N, D), L2-normalised."""
        return F.normalize(self.text_head(self.frozen_text_features(texts, batch_size=batch_size)), dim=-1)

    def encode_intra_class(self, stacks: torch.Tensor) -> torch.Tensor:
        """Intra-class stacks (B, K, 3, h, w) normalised float -> f2 (B, D), L2-normalised."""
        return self.intra_encoder(stacks, normalize=True)

    def class_text_embeddings(self) -> torch.Tensor:
        """f3 of every class name, in class order: (C, D), L2-normalised."""
        return self.encode_text(self.class_names)

    def prototypes(self) -> torch.Tensor:
        """Class prototypes norm(prototype_head(W^T)): (C, D), L2-normalised (W = classifier weight)."""
        return F.normalize(self.prototype_head(self.classifier.weight.t()), dim=-1)

    def patch_tokens(self, images: torch.Tensor, positional: bool = True) -> torch.Tensor:
        """ViT patch tokens (B, gh * gw, patch_width); see :meth:`Towers.patch_tokens`."""
        with self._image_grad():
            return self.towers.patch_tokens(images, positional=positional)

    # ------------------------------------------------------------------------------------ forward
    def forward(
        self,
        images: torch.Tensor | None = None,
        text_tokens: torch.Tensor | None = None,
        intra_stacks: torch.Tensor | None = None,
        *,
        image_features: torch.Tensor | None = None,
        text_features: torch.Tensor | None = None,
    ) -> KnowledgeSpaceOutput:
        """Embed a batch; every input is optional, the matching output is ``None`` when it is absent.

        Args:
            images: (B, 3, S, S) normalised float reference images, or instead
            image_features: (B, embed_dim) precomputed frozen image-tower outputs (a cache).
            text_tokens: (N, L) int64 tokens, or instead
            text_features: (N, embed_dim) precomputed frozen text-tower outputs (a cache).
            intra_stacks: (B, K, 3, h, w) normalised float intra-class stacks.

        Returns:
            :class:`KnowledgeSpaceOutput`; ``logits`` needs the image and the intra-class inputs.
        """
        cfg, width = self.config, self.towers.embed_dim
        if images is not None and image_features is not None:
            raise ValueError("KnowledgeSpace.forward: pass images or image_features, not both")
        if text_tokens is not None and text_features is not None:
            raise ValueError("KnowledgeSpace.forward: pass text_tokens or text_features, not both")
        if image_features is not None and not cfg.freeze_image_tower:
            raise ValueError(
                "KnowledgeSpace.forward: image_features are cached frozen-tower outputs, but "
                "config.freeze_image_tower is False (the image tower trains): pass images"
            )
        if text_features is not None and not cfg.freeze_text_tower:
            raise ValueError(
                "KnowledgeSpace.forward: text_features are cached frozen-tower outputs, but "
                "config.freeze_text_tower is False (the text tower trains): pass text_tokens"
            )
        image = text = intra = logits = None
        if image_features is not None:
            image = F.normalize(_check_features(image_features, "image_features", width), dim=-1)
        elif images is not None:
            image = self.encode_image(images)
        if text_features is not None:
            text = F.normalize(self.text_head(_check_features(text_features, "text_features", width)), dim=-1)
        elif text_tokens is not None:
            text = self.encode_text(text_tokens)
        if intra_stacks is not None:
            intra = self.encode_intra_class(intra_stacks)
        if image is not None and intra is not None:
            if image.shape[0] != intra.shape[0]:
                raise ValueError(
                    f"KnowledgeSpace.forward: the image batch ({image.shape[0]}) and intra_stacks batch "
                    f"({intra.shape[0]}) differ"
                )
            logits = self.classifier(torch.cat([image.to(intra.dtype), intra], dim=1))
        return KnowledgeSpaceOutput(
            image=image, text=text, intra=intra, logits=logits, prototypes=self.prototypes()
        )

    # --------------------------------------------------------------------------------------- loss
    def objective(
        self,
        class_counts: Sequence[int] | torch.Tensor,
        *,
        backend: str | None = None,
        gather_distributed: bool = False,
    ) -> BaMCoObjective:
        """The paper's loss for this model, from the config's weights, temperature and tau.

        Args:
            class_counts: (C,) training-record count of every class (the logit-adjustment prior), all > 0.
            backend, gather_distributed: see :class:`bamco_fast.BaMCoObjective`.

        Use it with :meth:`loss`: ``objective = ks.objective(counts).to(device)``;
        ``terms = ks.loss(ks(images, tokens, stacks), labels, objective)``; ``terms["loss"].backward()``.
        """
        n = len(class_counts)
        if n != self.num_classes:
            raise ValueError(
                f"KnowledgeSpace.objective: class_counts has {n} entries, expected {self.num_classes} (one per class)"
            )
        cfg = self.config
        return BaMCoObjective(
            class_counts,
            temperature=cfg.temperature,
            ce_weight=cfg.ce_weight,
            contrastive_weight=cfg.contrastive_weight,
            tau=cfg.logit_adjust_tau,
            backend=backend,
            gather_distributed=gather_distributed,
        ).to(self.device)

    @staticmethod
    def loss(
        output: KnowledgeSpaceOutput, labels: torch.Tensor, objective: BaMCoObjective
    ) -> dict[str, torch.Tensor]:
        """``objective(logits, [f1, f3, f2], labels, prototypes)``: dict with ``ce_loss``,
        ``contrastive_loss`` and ``loss`` (scalars). Needs all of image, text and intra for the batch."""
        missing = [n for n in ("image", "text", "intra", "logits") if getattr(output, n) is None]
        if missing:
            raise ValueError(
                f"KnowledgeSpace.loss: the output lacks {missing}; the forward needs images, texts and intra_stacks"
            )
        sizes = {n: getattr(output, n).shape[0] for n in ("image", "text", "intra")}
        if len(set(sizes.values())) != 1:
            raise ValueError(
                f"KnowledgeSpace.loss: image, text and intra need one batch size each, got {sizes}"
            )
        dtype = output.intra.dtype
        modalities = [output.image.to(dtype), output.text.to(dtype), output.intra]
        return objective(output.logits, modalities, labels, output.prototypes.to(dtype))

    # ------------------------------------------------------------------------------- persistence
    def saved_state_dict(self) -> dict[str, torch.Tensor]:
        """What :meth:`save` writes: every tensor except the towers', plus a tower's own when it trains
        (CPU copies). Restore with ``load_state_dict(state, strict=False)``; a training checkpoint needs
        nothing else (frozen towers load from their name)."""
        keep = tuple(
            prefix
            for prefix, frozen in (
                ("towers.clip.visual.", self.config.freeze_image_tower),
                ("towers.clip.text.", self.config.freeze_text_tower),
            )
            if not frozen
        )
        return {
            name: tensor.detach().to("cpu").contiguous().clone()
            for name, tensor in self.state_dict().items()
            if not name.startswith("towers.") or (keep and name.startswith(keep))
        }

    def save(self, folder: Path, *, include_towers: bool = False, overwrite: bool = False) -> Path:
        """Write a self-describing folder (atomically: complete or absent) and return it.

        Contents: ``knowledge_space.json`` (format, config, class count, tower name, file list),
        ``classes.json`` (class names in index order), ``model.safetensors`` (every weight except those
        of frozen towers, which load from the tower name) and, with ``include_towers``, ``towers/``: the
        towers as an open_clip hub-layout folder, so the run is portable and loads offline. See
        :mod:`bamco_fast.models.knowledge_space_io`.
        """
        return save_knowledge_space(self, folder, include_towers=include_towers, overwrite=overwrite)

    @classmethod
    def load(
        cls, folder: Path, *, device: torch.device | str | None = None, towers: Towers | None = None
    ) -> KnowledgeSpace:
        """Restore a folder written by :meth:`save` (one call; towers from ``towers/`` when included,
        else from the recorded tower name, unless ``towers`` is given)."""
        return load_knowledge_space(cls, folder, device=device, towers=towers)

    # ------------------------------------------------------------------------- published weights
    def load_official_state_dict(
        self, state_dict: Mapping[str, torch.Tensor], *, load_towers: bool = False, strict: bool = True
    ) -> OfficialKnowledgeSpaceReport:
        """Load the authors' ``<Dataset>_KnowledgeSpace.pt`` weights (``checkpoint["state_dict"]``, or the
        whole checkpoint dict); see :func:`bamco_fast.models.official.load_official_knowledge_space`.

        Returns:
            :class:`~bamco_fast.models.official.OfficialKnowledgeSpaceReport` (missing, unexpected, ignored
            and loaded keys).
        """
        from .official import load_official_knowledge_space

        return load_official_knowledge_space(self, state_dict, load_towers=load_towers, strict=strict)
