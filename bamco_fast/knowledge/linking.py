"""scispaCy's entity linker over any bamco_fast knowledge base.

scispaCy links a mention by embedding its text as TF-IDF character 3-grams (``char_wb``), looking up
the ``k`` nearest names/aliases of the knowledge base in an HNSW index (nmslib, cosine distance),
mapping them to concepts, and keeping the concepts whose best similarity exceeds ``threshold``
(``scispacy.candidate_generation.CandidateGenerator`` and ``scispacy.linking.EntityLinker``).
Its index builder (``create_tfidf_ann_index``) stores vectors as float16 and so needs scipy < 1.11;
:func:`build_candidate_generator` fits the same vectorizer and index itself (float32 vectors) and
hands them to scispaCy's own ``CandidateGenerator``, so linking is scispaCy's code on our knowledge
bases (UMLS release folders, Slake's KG, custom JSONL).

The index can be cached in a folder in scispaCy's ``LinkerPaths`` layout (``nmslib_index.bin``,
``tfidf_vectorizer.joblib``, ``tfidf_vectors_sparse.npz``, ``concept_aliases.json``) plus
``bamco_index.json``, a fingerprint of the aliases and parameters: a cache built for other names or
settings is rebuilt, never silently reused. The folder is written to a temporary sibling and
renamed, so an interrupted build leaves no half index.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

from .kb_base import KnowledgeBase

__all__ = ["LinkerConfig", "build_candidate_generator", "build_entity_linker", "scispacy_knowledge_base"]

_FINGERPRINT = "bamco_index.json"


@dataclass(frozen=True)
class LinkerConfig:
    """Settings of the TF-IDF/HNSW linker (scispaCy's defaults where scispaCy has one).

    ``min_df`` is the vectorizer's minimum document frequency of a 3-gram; ``None`` picks scispaCy's
    UMLS value (10) for knowledge bases with at least 100,000 names and 1 below that (with 10, a small
    vocabulary such as Slake's KG would keep almost no 3-grams). ``hnsw_m`` / ``ef_construction`` are
    the index's build parameters (scispaCy: 100 / 2000), ``ef_search`` its query-time breadth.
    ``progress`` reports an index build on stderr (nmslib's progress bar; a full UMLS selection takes
    a long time once, then comes from ``index_dir``).
    """

    k: int = 30
    threshold: float = 0.7
    min_df: int | None = None
    hnsw_m: int = 100
    ef_construction: int = 2000
    ef_search: int = 200
    index_dir: Path | None = None
    progress: bool = True

    def __post_init__(self) -> None:
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {self.threshold}")
        if self.min_df is not None and self.min_df < 1:
            raise ValueError(f"min_df must be >= 1 or None, got {self.min_df}")


def _import_scispacy_linking():
    try:
        import nmslib
        from scispacy import candidate_generation, linking, linking_utils
    except ImportError as exc:  # pragma: no cover - the knowledge extra installs them
        raise ImportError(
            "scispaCy's linker needs scispacy and nmslib: pip install bamco_fast[knowledge]"
        ) from exc
    return nmslib, candidate_generation, linking, linking_utils


def scispacy_knowledge_base(names: Iterable[tuple[str, str, bool]]):
    """A ``scispacy.linking_utils.KnowledgeBase`` from ``(concept_id, name, preferred)`` triples.

    The canonical name of a concept is its first preferred name (else its first name); every name is
    an alias. Definitions are not needed for linking (the builder attaches them afterwards).
    """
    *_, linking_utils = _import_scispacy_linking()
    canonical: dict[str, str] = {}
    preferred_seen: set[str] = set()
    aliases: dict[str, dict[str, None]] = {}
    for concept_id, name, preferred in names:
        name = name.strip()
        if not name:
            continue
        aliases.setdefault(concept_id, {})[name] = None
        if concept_id not in canonical or (preferred and concept_id not in preferred_seen):
            canonical[concept_id] = name
        if preferred:
            preferred_seen.add(concept_id)
    entities = [
        linking_utils.Entity(cid, canonical[cid], list(aliases[cid]), []) for cid in sorted(canonical)
    ]
    return linking_utils.KnowledgeBase(entities)


def _fingerprint(aliases: list[str], config: LinkerConfig, min_df: int) -> dict:
    digest = hashlib.sha256("\n".join(aliases).encode("utf-8")).hexdigest()
    settings = {
        k: v for k, v in asdict(config).items() if k not in ("index_dir", "k", "threshold", "ef_search")
    }
    settings["min_df"] = min_df
    return {"aliases_sha256": digest, "aliases": len(aliases), "settings": settings, "format": 1}


def _fit(aliases: list[str], config: LinkerConfig, min_df: int):
    """Fit the char-3-gram TF-IDF vectorizer and the HNSW index; drops names with an empty vector."""
    import numpy
    from sklearn.feature_extraction.text import TfidfVectorizer

    nmslib, *_ = _import_scispacy_linking()
    vectorizer = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 3), min_df=min_df, dtype=numpy.float32)
    vectors = vectorizer.fit_transform(aliases).tocsr()
    keep = numpy.asarray(vectors.sum(axis=1)).reshape(-1) != 0
    kept_aliases = [a for a, flag in zip(aliases, keep) if flag]
    vectors = vectors[keep]
    if not kept_aliases:
        raise ValueError("no knowledge-base name has a character 3-gram to index (names too short?)")
    index = nmslib.init(method="hnsw", space="cosinesimil_sparse", data_type=nmslib.DataType.SPARSE_VECTOR)
    index.addDataPointBatch(vectors)
    index.createIndex(
        {
            "M": config.hnsw_m,
            "efConstruction": config.ef_construction,
            "post": 0,
            "indexThreadQty": os.cpu_count() or 1,
        },
        print_progress=config.progress,
    )
    index.setQueryTimeParams({"efSearch": config.ef_search})
    return kept_aliases, vectorizer, vectors, index


def _save(folder: Path, fingerprint: dict, kept_aliases, vectorizer, vectors, index) -> None:
    import joblib
    import scipy.sparse

    from bamco_fast.data.jsonio import make_staging_dir

    staging = make_staging_dir(folder.parent, folder.name)
    try:
        (staging / "concept_aliases.json").write_text(json.dumps(kept_aliases), encoding="utf-8")
        joblib.dump(vectorizer, staging / "tfidf_vectorizer.joblib")
        scipy.sparse.save_npz(staging / "tfidf_vectors_sparse.npz", vectors)
        index.saveIndex(str(staging / "nmslib_index.bin"))
        (staging / _FINGERPRINT).write_text(json.dumps(fingerprint, indent=1), encoding="utf-8")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _cached(folder: Path, fingerprint: dict, ef_search: int):
    _, candidate_generation, *_ = _import_scispacy_linking()
    marker = folder / _FINGERPRINT
    if not marker.is_file():
        return None
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None
    paths = candidate_generation.LinkerPaths.from_directory(folder)
    if stored != fingerprint or not paths.is_locally_cached():
        return None
    return paths.load(ef_search=ef_search)


def build_candidate_generator(kb: KnowledgeBase, config: LinkerConfig = LinkerConfig()):
    """scispaCy ``CandidateGenerator`` over every name and alias of ``kb`` (cached in ``config.index_dir``)."""
    _, candidate_generation, *_ = _import_scispacy_linking()
    sci_kb = scispacy_knowledge_base(kb.iter_names())
    aliases = sorted(sci_kb.alias_to_cuis)
    if not aliases:
        raise ValueError(f"knowledge base {kb.kind}:{kb.source} has no names to link to")
    min_df = config.min_df if config.min_df is not None else (10 if len(aliases) >= 100_000 else 1)
    fingerprint = _fingerprint(aliases, config, min_df)
    loaded = _cached(Path(config.index_dir), fingerprint, config.ef_search) if config.index_dir else None
    if loaded is None:
        if config.progress:
            where = (
                f", cached in {config.index_dir}" if config.index_dir else " (not cached: see --linker-index)"
            )
            print(f"linker: indexing {len(aliases)} names of {kb.kind}:{kb.source}{where}", file=sys.stderr)
        kept, vectorizer, vectors, index = _fit(aliases, config, min_df)
        if config.index_dir is not None:
            _save(Path(config.index_dir), fingerprint, kept, vectorizer, vectors, index)
    else:
        kept, vectorizer, index = loaded
    return candidate_generation.CandidateGenerator(
        index, vectorizer, kept, sci_kb, ef_search=config.ef_search
    )


def build_entity_linker(kb: KnowledgeBase, config: LinkerConfig = LinkerConfig()):
    """scispaCy ``EntityLinker`` (abbreviations resolved, best concept per mention) over ``kb``.

    Call it on a parsed ``Doc``; each entity span's ``._.kb_ents`` then holds ``[(concept_id, score)]``.
    Definition-based candidate filtering is off: the builder's noise filter handles definitions.
    """
    *_, linking, _ = _import_scispacy_linking()
    return linking.EntityLinker(
        candidate_generator=build_candidate_generator(kb, config),
        resolve_abbreviations=True,
        k=config.k,
        threshold=config.threshold,
        filter_for_definitions=False,
        max_entities_per_mention=1,
    )
