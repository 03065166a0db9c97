"""Models of the two BaMCo stages: the knowledge space (towers, heads, intra-class encoder, classifier)
and the knowledge-driven VQA model (see the modules of this package).

Importing this package needs only torch: open_clip, timm and transformers are imported by the functions
that load or build towers.
"""

from .entity_input import EntityTexts, entity_texts
from .heads import PrototypeHead, TextHead
from .knowledge_space import (
    KnowledgeSpace,
    KnowledgeSpaceConfig,
    KnowledgeSpaceOutput,
    OfficialKnowledgeSpaceReport,
)
from .projectors import PatchPoolingProjector, VectorProjector
from .random_biomedclip import build_random_biomedclip
from .random_llms import build_random_llm
from .retrieval import IntraClassBank
from .tiny import build_tiny_towers
from .tiny_lm import build_tiny_causal_lm
from .towers import BIOMEDCLIP, Towers, load_towers
from .vqa import VQAModel, build_vqa_model
from .vqa_config import GeneratedAnswer, VQAModelConfig

__all__ = [
    "BIOMEDCLIP",
    "EntityTexts",
    "GeneratedAnswer",
    "IntraClassBank",
    "KnowledgeSpace",
    "KnowledgeSpaceConfig",
    "KnowledgeSpaceOutput",
    "OfficialKnowledgeSpaceReport",
    "PatchPoolingProjector",
    "PrototypeHead",
    "TextHead",
    "Towers",
    "VQAModel",
    "VQAModelConfig",
    "VectorProjector",
    "build_random_biomedclip",
    "build_random_llm",
    "build_tiny_causal_lm",
    "build_tiny_towers",
    "build_vqa_model",
    "entity_texts",
    "load_towers",
]
