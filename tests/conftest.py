"""Test-wide setup: Triton interpreter without a GPU, offline hubs, seeding, and the `cuda` marker.

``TRITON_INTERPRET`` must be set before any ``@triton.jit`` function is defined, so it is set here at
import time, before a test module imports :mod:`bamco_fast.kernels`.
"""

from __future__ import annotations

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest

_HAS_CUDA = torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    skip_cuda = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
    for item in items:
        if "cuda" in item.keywords and not _HAS_CUDA:
            item.add_marker(skip_cuda)


@pytest.fixture
def one_thread():
    """One torch thread for the test (tiny models: two threads were 6-10x slower on a shared 2-core machine).

    Use it per module with ``pytestmark = pytest.mark.usefixtures("one_thread")``.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed_everything():
    """Every test starts from the same random state."""
    random.seed(0)
    torch.manual_seed(0)
    try:
        import numpy as np

        np.random.seed(0)
    except ImportError:
        pass
    yield


# Texts of the session's tiny towers: enough words for a small WordPiece vocabulary.
TINY_TOWER_TEXTS = (
    "liver",
    "the liver is the largest solid organ of the abdomen",
    "lung",
    "the lung is an organ of respiration in the chest",
    "pneumonia",
    "inflammation of the lung parenchyma",
    "location of chest",
    "brain",
    "the brain is the central organ of the nervous system",
    "finding site of brain edema",
    "kidney",
    "a paired organ that filters blood and makes urine",
)


@pytest.fixture(scope="session")
def tiny_towers_dir(tmp_path_factory):
    """A tiny BiomedCLIP-shaped open_clip folder built once per session; load it with
    ``load_towers(f"local-dir:{tiny_towers_dir}")`` (or take the ``tiny_towers`` fixture).

    64x64 images (patch grid 4x4, patch width 64), embed_dim 32, context length 32.
    """
    from bamco_fast.models.tiny import build_tiny_towers

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("tiny_towers") / "towers"
    return build_tiny_towers(folder, TINY_TOWER_TEXTS, image_size=64, embed_dim=32, context_length=32, seed=0)


@pytest.fixture(scope="module")
def tiny_towers(tiny_towers_dir):
    """The session's tiny towers loaded (``Towers``, eval mode), once per test module: a module may train them."""
    from bamco_fast.models.towers import load_towers

    return load_towers(f"local-dir:{tiny_towers_dir}")
