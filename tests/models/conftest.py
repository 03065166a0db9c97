"""Fixtures of the model tests: a tiny knowledge space and tiny Llama / GPT-2 folders (module-scoped)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vqa_fixtures import CLASSES, INTRA_SIZE, K_INTRA, KIND, LM_TEXTS

from bamco_fast.models.tiny_lm import build_tiny_causal_lm


@pytest.fixture(scope="module")
def lm_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_lms")
    out = {kind: build_tiny_causal_lm(root / kind, kind, LM_TEXTS, seed=0) for kind in KIND}
    out["wide"] = build_tiny_causal_lm(root / "wide", "llama", LM_TEXTS, hidden_size=96)
    return out


@pytest.fixture(scope="module")
def ks_dir(tiny_towers_dir, tmp_path_factory):
    from bamco_fast.models.knowledge_space import KnowledgeSpace, KnowledgeSpaceConfig
    from bamco_fast.models.towers import load_towers

    torch.manual_seed(0)
    config = KnowledgeSpaceConfig(
        tower=f"local-dir:{tiny_towers_dir}",
        embed_dim=32,
        num_images=K_INTRA,
        intra_image_size=INTRA_SIZE,
        feature_size=2,
    )
    ks = KnowledgeSpace(config, CLASSES, towers=load_towers(config.tower))
    folder = tmp_path_factory.mktemp("ks") / "space"
    ks.save(folder)
    return folder


@pytest.fixture(scope="module")
def ks(ks_dir):
    from bamco_fast.models.knowledge_space import KnowledgeSpace

    return KnowledgeSpace.load(ks_dir)
