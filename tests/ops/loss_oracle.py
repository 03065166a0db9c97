"""A literal float64 transcription of BaMCo's Eq. 1 (BalSCL semantics), anchor by anchor.

Deliberately written differently from the library's reference: for every anchor it forms, class by
class, the mean of exp(similarity / T) over that class's keys other than the anchor, sums those class
means into the denominator, and averages log-ratios over the positives.
"""

from __future__ import annotations

import itertools

import torch


def eq1_loss(features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, temperature: float):
    """Eq. 1 over all V views of ``features`` (B, V, D); returns a float64 scalar (differentiable)."""
    feats = features.double()
    protos = prototypes.double()
    batch, num_views, _ = feats.shape
    num_classes = protos.shape[0]
    keys = torch.cat([feats[:, v] for v in range(num_views)] + [protos], dim=0)
    key_labels = torch.cat([labels] * num_views + [torch.arange(num_classes)])
    per_anchor = []
    for i in range(num_views * batch):
        z = keys[i]
        y = int(key_labels[i])
        others = torch.ones(keys.shape[0], dtype=torch.bool)
        others[i] = False
        sims = keys @ z / temperature
        # Sum over classes of the class mean of exp(sim / T), the anchor itself left out.
        class_sums = torch.zeros(num_classes, dtype=torch.float64).index_add(
            0, key_labels[others], torch.exp(sims[others])
        )
        class_sizes = torch.bincount(key_labels[others], minlength=num_classes)
        present = class_sizes > 0
        denominator = (class_sums[present] / class_sizes[present]).sum()
        positives = others & (key_labels == y)
        per_anchor.append(-(sims[positives] - torch.log(denominator)).mean())
    return torch.stack(per_anchor).mean()


def eq1_multimodal_loss(modalities, labels, prototypes, temperature):
    """Mean over unordered modality pairs of :func:`eq1_loss` on the two-view stack."""
    pairs = itertools.combinations(range(len(modalities)), 2)
    losses = [
        eq1_loss(torch.stack([modalities[a], modalities[b]], dim=1), labels, prototypes, temperature)
        for a, b in pairs
    ]
    return torch.stack(losses).mean()
