"""Shared pieces of the VQA model tests: tiny towers' knowledge space, tiny LLM folders, banks, batches."""

from __future__ import annotations

import torch

from bamco_fast.models.retrieval import IntraClassBank
from bamco_fast.models.vqa import VQAModel, VQAModelConfig, build_vqa_model

CLASSES = ["liver", "lung", "brain"]
QUESTIONS = [
    "what organ is shown?",
    "is the lung abnormal in this chest image?",
    "where is the brain edema located in this scan today?",
    "yes or no?",
]
ANSWERS = ["liver", "no", "left temporal lobe", "yes"]
QIDS = ["q0", "q1", "q2", "q3"]
LM_TEXTS = QUESTIONS + ANSWERS + ["the liver is an organ", "the lung is in the chest", "brain"] * 3
KIND = ["llama", "gpt2"]
K_INTRA, INTRA_SIZE = 64, 32  # the smallest stack the intra-class encoder accepts


def _bank(ks, sampling="class") -> IntraClassBank:
    """Three classes of two images each; ``sampling="class"`` (encoded once per class) keeps tests fast."""
    gen = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (6, 3, INTRA_SIZE, INTRA_SIZE), dtype=torch.uint8, generator=gen)
    towers = ks.towers
    return IntraClassBank(
        CLASSES,
        images,
        [[0, 1], [2, 3], [4, 5]],
        mean=towers.image_mean,
        std=towers.image_std,
        sampling=sampling,
    )


def _images(ks, n=4) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    return torch.randn(n, 3, ks.towers.image_size, ks.towers.image_size, generator=gen)


def _model(lm_dirs, ks, ks_dir, kind="llama", bank="class", **overrides) -> VQAModel:
    torch.manual_seed(0)
    config = VQAModelConfig(llm=str(lm_dirs[kind]), knowledge_space=str(ks_dir), lora_r=8, **overrides)
    return build_vqa_model(config, ks, _bank(ks, bank) if bank else None)


def _train(model, ks, steps=4, lr=3e-3):
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    images = _images(ks)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = model(images, QUESTIONS, ANSWERS, qids=QIDS)["loss"]
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses
