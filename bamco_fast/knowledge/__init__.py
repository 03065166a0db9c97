"""Knowledge sources for BaMCo: "head [relation] tail" records with the head's definition, per image.

Entry points: :func:`build_knowledge` (``python -m bamco_fast.knowledge build``), the knowledge
bases (:func:`open_knowledge_base`: UMLS release files, Slake's KG CSVs, custom JSONL), and readers
for knowledge files in the published schema. spaCy/scispaCy are imported only when entities are
extracted (``pip install bamco_fast[knowledge]``).
"""

from .builder import BuildConfig, BuildResult, build_knowledge
from .extract import Mention, entity_source_text, make_extractor
from .kb_base import KB_KINDS, KnowledgeBase, open_knowledge_base, parse_kb_spec
from .kb_jsonl import JsonlKnowledgeBase
from .kb_slake import SlakeKnowledgeGraph
from .kb_umls import UmlsKnowledgeBase
from .linking import LinkerConfig
from .published import load_image_map, read_knowledge_file
from .schema import FIELDS, Concept, KnowledgeRecord, NameHit, compact_key
from .stats import CoverageReport, KnowledgeStats, coverage, format_stats_table, knowledge_stats

__all__ = [
    "FIELDS",
    "KB_KINDS",
    "BuildConfig",
    "BuildResult",
    "Concept",
    "CoverageReport",
    "JsonlKnowledgeBase",
    "KnowledgeBase",
    "KnowledgeRecord",
    "KnowledgeStats",
    "LinkerConfig",
    "Mention",
    "NameHit",
    "SlakeKnowledgeGraph",
    "UmlsKnowledgeBase",
    "build_knowledge",
    "compact_key",
    "coverage",
    "entity_source_text",
    "format_stats_table",
    "knowledge_stats",
    "load_image_map",
    "make_extractor",
    "open_knowledge_base",
    "parse_kb_spec",
    "read_knowledge_file",
]
