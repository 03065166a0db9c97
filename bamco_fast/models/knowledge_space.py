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

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..encoders import IntraClassEncoder
from ..losses import BaMCoObjective, NormedLinear
from ._folders import staged_folder
from .heads import PrototypeHead, TextHead
from .official import OfficialKnowledgeSpaceReport
from .towers import BIOMEDCLIP, Towers, check_tower_name, load_towers, write_hub_folder

FORMAT = "bamco_fast.knowledge_space"
FORMAT_VERSION = 1
META_FILE, CLASSES_FILE, WEIGHTS_FILE, TOWERS_DIR = (
    "knowledge_space.json",
    "classes.json",
    "model.safetensors",
    "towers",
)


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
        towers as an open_clip hub-layout folder, so the run is portable and loads offline.
        """
        from safetensors.torch import save_file

        folder = Path(folder).absolute()
        with staged_folder(folder, overwrite=overwrite, what="KnowledgeSpace.save") as staging:
            state = self.saved_state_dict()
            save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": FORMAT})
            (staging / CLASSES_FILE).write_text(
                json.dumps(self.class_names, ensure_ascii=False, indent=1) + "\n", encoding="utf-8"
            )
            if include_towers:
                (staging / TOWERS_DIR).mkdir()
                write_hub_folder(
                    staging / TOWERS_DIR,
                    folder / TOWERS_DIR,
                    self.towers.clip,
                    self.towers.tokenizer,
                    self.towers.model_config,
                )
            meta = {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "config": self.config.to_dict(),
                "num_classes": self.num_classes,
                "tower": self.towers.name,
                "towers_dir": TOWERS_DIR if include_towers else None,
                "classes_file": CLASSES_FILE,
                "weights_file": WEIGHTS_FILE,
                "num_tensors": len(state),
            }
            (staging / META_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(
        cls, folder: Path, *, device: torch.device | str | None = None, towers: Towers | None = None
    ) -> KnowledgeSpace:
        """Restore a folder written by :meth:`save` (one call; towers from ``towers/`` when included,
        else from the recorded tower name, unless ``towers`` is given)."""
        from safetensors.torch import load_file

        folder = Path(folder)
        meta_path = folder / META_FILE
        if not meta_path.is_file():
            raise FileNotFoundError(
                f"KnowledgeSpace.load: {str(folder)!r} has no {META_FILE} (not a saved knowledge space)"
            )
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"KnowledgeSpace.load: {meta_path} has format {meta.get('format')!r} version "
                f"{meta.get('format_version')!r}, expected {FORMAT!r} version {FORMAT_VERSION}"
            )
        config = KnowledgeSpaceConfig.from_dict(meta["config"])
        class_names = json.loads((folder / meta["classes_file"]).read_text(encoding="utf-8"))
        if len(class_names) != meta["num_classes"]:
            raise ValueError(
                f"KnowledgeSpace.load: {meta['classes_file']} lists {len(class_names)} classes, metadata says {meta['num_classes']}"
            )
        if towers is None:
            name = (
                f"local-dir:{(folder / meta['towers_dir']).absolute()}"
                if meta.get("towers_dir")
                else meta["tower"]
            )
            towers = load_towers(name, device=device)
        model = cls(config, class_names, towers=towers)
        state = load_file(str(folder / meta["weights_file"]))
        expected = model.saved_state_dict()
        missing, unexpected = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or unexpected:
            raise ValueError(
                f"KnowledgeSpace.load: {meta['weights_file']} does not match the model: missing {missing[:8]}, unexpected {unexpected[:8]}"
            )
        bad = [
            (k, tuple(state[k].shape), tuple(expected[k].shape))
            for k in expected
            if state[k].shape != expected[k].shape
        ]
        if bad:
            raise ValueError(
                f"KnowledgeSpace.load: tensor shapes differ from the config (name, saved, expected): {bad[:5]}"
            )
        model.load_state_dict(state, strict=False)
        return model.to(device) if device is not None else model

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
