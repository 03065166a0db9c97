"""Knowledge-space pretraining data: knowledge records -> batches of images, intra-class stacks and texts.

* :mod:`.records`: :func:`load_knowledge_table` -> classes (head entities), class counts, image pools,
  the finite table of distinct training strings.
* :mod:`.image_cache`: :func:`build_image_cache` decodes each distinct image once (uint8, on any device).
* :mod:`.augment` / :mod:`.randaugment`: batched tensor augmentation with per-view random parameters.
* :mod:`.batches`: :class:`KnowledgeBatches` (seeded, resumable training batches) and
  :func:`evaluation_batches` (deterministic views).

torchvision and Pillow are imported only when images are decoded or resampled.
"""

from .augment import CLIP_MEAN, CLIP_STD, AugmentConfig, augment_views, evaluation_views
from .batches import (
    PUBLISHED_TEXT_PROBABILITIES,
    BatchDraw,
    EvalBatch,
    KnowledgeBatches,
    PretrainBatch,
    SamplerConfig,
    evaluation_batches,
)
from .image_cache import ImageCache, build_image_cache, decode_image
from .randaugment import RANDAUGMENT_OPS, rand_augment
from .records import MISSING_DEFINITION, TEXT_KINDS, KnowledgeTable, KnowledgeTableError, load_knowledge_table

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "MISSING_DEFINITION",
    "PUBLISHED_TEXT_PROBABILITIES",
    "RANDAUGMENT_OPS",
    "TEXT_KINDS",
    "AugmentConfig",
    "BatchDraw",
    "EvalBatch",
    "ImageCache",
    "KnowledgeBatches",
    "KnowledgeTable",
    "KnowledgeTableError",
    "PretrainBatch",
    "SamplerConfig",
    "augment_views",
    "build_image_cache",
    "decode_image",
    "evaluation_batches",
    "evaluation_views",
    "load_knowledge_table",
    "rand_augment",
]
