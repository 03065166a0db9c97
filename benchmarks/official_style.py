"""The published BalSCL computation, re-expressed from its description, as the "official" benchmark peer.

It mirrors what the public implementation does per call (see the project's performance notes): a
C x C identity on the host to count classes, a Python-level list of per-key class sizes turned into a
tensor, dense (A, M) masks and weights, a detached row max including the self logit, and the masked
mean of log-probabilities over positives. Kept only in ``benchmarks/``: it is a timing peer, never a
code path of the library.
"""

from __future__ import annotations

import torch


def official_style_loss(
    features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, temperature=0.07
):
    """features (B, V, D), labels (B,), prototypes (C, D) -> scalar (same value as the library's loss)."""
    device = features.device
    batch, num_views, _ = features.shape
    num_classes = prototypes.shape[0]
    targets = torch.cat([labels.repeat(num_views), torch.arange(num_classes, device=device)]).view(-1, 1)
    class_counts = torch.eye(num_classes)[targets.view(-1).cpu()].sum(dim=0).squeeze()
    anchors_n = num_views * batch
    mask = torch.eq(targets[:anchors_n], targets.T).float()
    logits_mask = torch.scatter(
        torch.ones_like(mask), 1, torch.arange(anchors_n, device=device).view(-1, 1), 0
    )
    mask = mask * logits_mask
    keys = torch.cat(torch.unbind(features, dim=1), dim=0)
    keys = torch.cat([keys, prototypes], dim=0)
    logits = keys[:anchors_n].mm(keys.T) / temperature
    logits_max, _ = torch.max(logits, dim=1, keepdim=True)
    logits = logits - logits_max.detach()
    exp_logits = torch.exp(logits) * logits_mask
    per_key = torch.tensor([class_counts[int(i)] for i in targets], device=device).view(1, -1)
    weight = per_key.expand(anchors_n, per_key.shape[1]) - mask
    exp_logits_sum = exp_logits.div(weight).sum(dim=1, keepdim=True)
    log_prob = logits - torch.log(exp_logits_sum)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    return -mean_log_prob_pos.view(num_views, batch).mean()
