"""Loss modules: hyperparameters in ``__init__``, math in :mod:`bamco_fast.functional`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from . import functional

AUTO_BACKEND_NAMES: tuple[str | None, ...] = (None, "auto")


def check_backend_name(owner: str, backend: object, op_name: str) -> str | None:
    """Return ``backend`` if it names a backend of op ``op_name`` (or automatic choice), else raise.

    The valid names are those of the op's backend table (:data:`bamco_fast.ops.OPS`) plus ``None`` and
    ``"auto"``; checked when a module is built, so a typo fails at construction, not at the first forward.
    Whether the named backend can run given inputs (device, dtype, build) is still decided per call.
    """
    from .ops import OPS

    table = OPS[op_name]
    names = [b.name for b in (table() if callable(table) else table)]
    if backend not in AUTO_BACKEND_NAMES and backend not in names:
        raise ValueError(f"{owner}: backend must be None, 'auto' or one of {names}, got {backend!r}")
    return backend  # type: ignore[return-value]


class BaMCoLoss(nn.Module):
    """Balanced multi-view contrastive loss (module form of :func:`bamco_fast.functional.bamco_loss`).

    Args:
        temperature: T > 0 (default 0.07).
        backend: ``None`` (automatic), ``"triton"``, ``"cpp"`` or ``"reference"``.
        gather_distributed: all-gather features and labels across ranks before the loss.

    Shape:
        features (B, V, D), labels (B,), prototypes (C, D) -> scalar.
    """

    def __init__(
        self, temperature: float = 0.07, backend: str | None = None, gather_distributed: bool = False
    ):
        super().__init__()
        if not (isinstance(temperature, (int, float)) and 0 < temperature < math.inf):
            raise ValueError(f"BaMCoLoss: temperature must be a finite number > 0, got {temperature!r}")
        self.temperature = float(temperature)
        self.backend = check_backend_name("BaMCoLoss", backend, "bamco_loss")
        self.gather_distributed = gather_distributed

    def forward(self, features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
        return functional.bamco_loss(
            features,
            labels,
            prototypes,
            self.temperature,
            backend=self.backend,
            gather_distributed=self.gather_distributed,
        )

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, backend={self.backend!r}, gather_distributed={self.gather_distributed}"


def _as_counts(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if counts.dim() != 1 or counts.numel() == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    if not torch.isfinite(counts).all() or (counts <= 0).any():
        bad = [int(i) for i in torch.nonzero(~(counts > 0) | ~torch.isfinite(counts)).flatten()[:5]]
        raise ValueError(
            f"class_counts must be finite and > 0 for every class (a class never seen in training has no "
            f"prior; drop it or smooth the counts), got bad entries at indices {bad}"
        )
    return counts


class LogitAdjustedCrossEntropy(nn.Module):
    """Cross-entropy on logits shifted by ``tau * log(prior)`` (logit adjustment for long tails).

    ``L = CE(logits + tau * log pi, y)`` with ``pi_c = counts_c / sum(counts)``.

    Args:
        class_counts: (C,) training-set count of every class, all > 0.
        tau: adjustment strength (default 1.0, as in the paper).

    Shape:
        logits (B, C), labels (B,) -> scalar.
    """

    log_prior: torch.Tensor

    def __init__(self, class_counts: Sequence[int] | torch.Tensor, tau: float = 1.0):
        super().__init__()
        counts = _as_counts(class_counts)
        self.tau = float(tau)
        self.register_buffer("log_prior", torch.log(counts / counts.sum()).float())

    @property
    def num_classes(self) -> int:
        return self.log_prior.numel()

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"LogitAdjustedCrossEntropy: logits must be (B, C) with C = len(class_counts) = "
                f"{self.num_classes}, got shape {tuple(logits.shape)}"
            )
        return functional.logit_adjusted_cross_entropy(logits, labels, self.log_prior, self.tau)

    def extra_repr(self) -> str:
        return f"num_classes={self.log_prior.numel()}, tau={self.tau}"


class NormedLinear(nn.Module):
    """Cosine classifier: ``scale * normalize(x) @ normalize_columns(W)``.

    ``logits[..., c] = scale * <x / |x|, W[:, c] / |W[:, c]|>``: each input vector (the last dimension)
    and each weight column are L2-normalised, so every logit lies in [-scale, scale]. The weight is
    stored as (in_features, out_features), initialised uniform in [-1, 1] with unit-norm columns; its
    columns double as class vectors (BaMCo maps them to the prototypes).

    Args:
        in_features: input size.
        out_features: number of classes.
        scale: logit scale (default 30).

    Shape:
        (..., in_features) -> (..., out_features): any number of leading dimensions, e.g. (B, D) or
        (B, T, D); the normalisation is always over the last dimension.
    """

    def __init__(self, in_features: int, out_features: int, scale: float = 30.0):
        super().__init__()
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"NormedLinear: in_features and out_features must be >= 1, got {in_features}, {out_features}"
            )
        self.scale = float(scale)
        weight = torch.empty(in_features, out_features).uniform_(-1, 1)
        self.weight = nn.Parameter(weight / weight.norm(dim=0, keepdim=True).clamp_min(1e-12))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        in_features = self.weight.shape[0]
        if x.dim() < 1 or x.shape[-1] != in_features:
            raise ValueError(
                f"NormedLinear: input must have shape (..., in_features) = (..., {in_features}), "
                f"got {tuple(x.shape)}"
            )
        return self.scale * (nn.functional.normalize(x, dim=-1) @ nn.functional.normalize(self.weight, dim=0))

    def extra_repr(self) -> str:
        return f"in_features={self.weight.shape[0]}, out_features={self.weight.shape[1]}, scale={self.scale}"


class BaMCoObjective(nn.Module):
    """The knowledge-space pretraining objective of BaMCo.

    ``loss = ce_weight * LA-CE(cls_logits, y) + contrastive_weight * mean_{a<b} BalSCL(m_a, m_b)``.

    Args:
        class_counts: (C,) training-set class counts for the logit-adjusted cross-entropy.
        temperature: contrastive temperature (default 0.07).
        ce_weight, contrastive_weight: mixing weights (0.5 / 0.5 in the paper).
        tau: logit-adjustment strength.
        backend: contrastive-loss backend (``None`` automatic).
        gather_distributed: all-gather across ranks for the contrastive term.

    Shape:
        cls_logits (B, C); modalities: sequence of (B, D); labels (B,); prototypes (C, D) ->
        dict with scalar ``ce_loss``, ``contrastive_loss`` and ``loss``. ``C`` is fixed by
        ``class_counts``: logits and prototypes with another class count are refused.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | torch.Tensor,
        temperature: float = 0.07,
        ce_weight: float = 0.5,
        contrastive_weight: float = 0.5,
        tau: float = 1.0,
        backend: str | None = None,
        gather_distributed: bool = False,
    ):
        super().__init__()
        self.ce = LogitAdjustedCrossEntropy(class_counts, tau=tau)
        self.contrastive = BaMCoLoss(temperature, backend=backend, gather_distributed=gather_distributed)
        self.ce_weight = float(ce_weight)
        self.contrastive_weight = float(contrastive_weight)

    def forward(
        self,
        cls_logits: torch.Tensor,
        modalities: Sequence[torch.Tensor],
        labels: torch.Tensor,
        prototypes: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        num_classes = self.ce.num_classes
        if cls_logits.dim() != 2 or cls_logits.shape[1] != num_classes:
            raise ValueError(
                f"BaMCoObjective: cls_logits must be (B, C) with C = len(class_counts) = {num_classes}, "
                f"got shape {tuple(cls_logits.shape)}"
            )
        if prototypes.dim() != 2 or prototypes.shape[0] != num_classes:
            raise ValueError(
                f"BaMCoObjective: prototypes must be (C, D) with C = len(class_counts) = {num_classes}, "
                f"got shape {tuple(prototypes.shape)}"
            )
        ce = self.ce(cls_logits, labels)
        con = functional.bamco_multimodal_loss(
            modalities,
            labels,
            prototypes,
            self.contrastive.temperature,
            backend=self.contrastive.backend,
            gather_distributed=self.contrastive.gather_distributed,
        )
        return {
            "ce_loss": ce,
            "contrastive_loss": con,
            "loss": self.ce_weight * ce + self.contrastive_weight * con,
        }
