"""Models of the two BaMCo stages: the knowledge space (towers, heads, intra-class encoder, classifier)
and the knowledge-driven VQA model (see the modules of this package).

Importing this package needs only torch: open_clip, timm and transformers are imported by the functions
that load or build towers.
"""

from .heads import PrototypeHead, TextHead
from .knowledge_space import (
    KnowledgeSpace,
    KnowledgeSpaceConfig,
    KnowledgeSpaceOutput,
    OfficialKnowledgeSpaceReport,
)
from .tiny import build_tiny_towers
from .towers import BIOMEDCLIP, Towers, load_towers

__all__ = [
    "BIOMEDCLIP",
    "KnowledgeSpace",
    "KnowledgeSpaceConfig",
    "KnowledgeSpaceOutput",
    "OfficialKnowledgeSpaceReport",
    "PrototypeHead",
    "TextHead",
    "Towers",
    "build_tiny_towers",
    "load_towers",
]
