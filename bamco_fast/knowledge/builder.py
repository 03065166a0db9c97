"""Build a knowledge source for one dataset split (paper §2, "Knowledge Source").

Steps: read the split (:func:`bamco_fast.data.load_split`) -> pick the text of each QA pair
(:func:`~.extract.entity_source_text`) -> extract entities linked to the first knowledge base ->
fetch their definitions and relations (definitions missing there are looked up by name in the
further knowledge bases, in order) -> one record per (QA pair, head entity, relation) -> noise
filter -> de-duplicate -> sort by (image, dataset order, head, relation, tail).

Noise filter (counted in :attr:`BuildResult.filtered`):

* ``no definition``  the head has no definition in any knowledge base. ``missing_definition``
  decides: ``"drop"`` drops such records, ``"keep"`` keeps them with ``def_head = null``, and
  ``"auto"`` (default) keeps them when the first knowledge base has no definitions for some kinds of
  concept by design (:attr:`~.kb_base.KnowledgeBase.definitions_optional`: Slake's KG, whose organs
  have none) and drops them otherwise (UMLS, JSONL: there a concept without a definition is noise);
* ``self relation``  tail equals head (case-insensitive);
* ``dropped label``  the relation label is one the knowledge base marks as noise (UMLS:
  inverse_isa, mapped_from, mapped_to, inverse_was_a) or one given in ``drop_relations``;
* ``over max_relations``  more than ``max_relations`` relations of one head (rarest labels kept).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bamco_fast.data import SkipLog, VQARecord, load_split

from .extract import entity_source_text, make_extractor
from .kb_base import KnowledgeBase
from .linking import LinkerConfig
from .schema import Concept, KnowledgeRecord, compact_key

__all__ = [
    "MISSING_DEFINITION_POLICIES",
    "BuildConfig",
    "BuildResult",
    "build_knowledge",
    "resolve_missing_definition",
]

MISSING_DEFINITION_POLICIES: tuple[str, ...] = ("auto", "drop", "keep")


@dataclass(frozen=True)
class BuildConfig:
    """What to build; see ``python -m bamco_fast.knowledge build --help`` for the meaning of each field."""

    dataset: str
    root: Path
    split: str = "train"
    lang: str = "en"
    layout: str = "auto"
    image_dir: Path | None = None
    skip_missing: bool = False
    pipeline: str = "auto"
    overlap: str = "all"
    spacy_model: str = "en_core_sci_sm"
    linker: str = "tfidf"
    linker_threshold: float = 0.7
    linker_index: Path | None = None
    missing_definition: str = "auto"
    max_relations: int | None = None
    drop_relations: frozenset[str] = frozenset()
    val_fraction: float = 0.1
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if self.missing_definition not in MISSING_DEFINITION_POLICIES:
            raise ValueError(
                f"missing_definition must be one of {list(MISSING_DEFINITION_POLICIES)}, "
                f"got {self.missing_definition!r}"
            )
        if self.max_relations is not None and (
            isinstance(self.max_relations, bool)
            or not isinstance(self.max_relations, int)
            or self.max_relations < 1
        ):
            raise ValueError(
                "max_relations (--max-relations) must be an int >= 1, or None for no cap, "
                f"got {self.max_relations!r}"
            )


@dataclass
class BuildResult:
    records: list[KnowledgeRecord]
    pipeline: str
    qa_pairs: int
    qa_with_entities: int
    skipped: SkipLog = field(default_factory=SkipLog)
    filtered: Counter[str] = field(default_factory=Counter)
    #: the resolved ``missing_definition`` policy: ``"drop"`` or ``"keep"``
    missing_definition: str = "drop"


def _natural(text: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", text))


def _norm_label(label: str) -> str:
    return label.replace("_", " ").strip().lower()


def _limit(relations: Sequence[tuple[str, str]], max_relations: int | None) -> list[tuple[str, str]]:
    """Keep at most ``max_relations`` (>= 1), preferring rare labels (deterministic)."""
    if max_relations is None or len(relations) <= max_relations:
        return list(relations)
    freq = Counter(label for label, _ in relations)
    return sorted(relations, key=lambda r: (freq[r[0]], r[0], r[1]))[:max_relations]


def _fill_definitions(concepts: dict[str, Concept], fallbacks: Sequence[KnowledgeBase]) -> dict[str, str]:
    """Definitions for concepts that lack one, looked up by name in the fallback knowledge bases."""
    found: dict[str, str] = {}
    for kb in fallbacks:
        wanted = {
            cid: compact_key(c.name) for cid, c in concepts.items() if not c.definition and cid not in found
        }
        if not wanted:
            break
        hits = kb.match_names(set(wanted.values()))
        ids = {hits[k][0].concept_id for k in wanted.values() if k in hits}
        details = kb.concepts(ids)
        for cid, key in wanted.items():
            if key in hits and (d := details.get(hits[key][0].concept_id)) and d.definition:
                found[cid] = d.definition
    return found


def resolve_missing_definition(policy: str, primary: KnowledgeBase) -> str:
    """``"auto"`` -> ``"keep"`` if ``primary.definitions_optional`` else ``"drop"``; others unchanged."""
    if policy != "auto":
        return policy
    return "keep" if getattr(primary, "definitions_optional", False) else "drop"


def _check_build_inputs(config: BuildConfig, kbs: Sequence[KnowledgeBase]) -> None:
    """Raise ``ValueError`` for no knowledge base, an unknown ``missing_definition`` policy, a language
    other than English, or a first knowledge base without relations."""
    if not kbs:
        raise ValueError("at least one knowledge base is needed")
    if config.missing_definition not in MISSING_DEFINITION_POLICIES:
        raise ValueError(
            f"missing_definition must be one of {list(MISSING_DEFINITION_POLICIES)}, "
            f"got {config.missing_definition!r}"
        )
    if config.lang != "en":
        raise ValueError(
            f"knowledge building supports English questions only (--lang en), got {config.lang!r}"
        )
    if getattr(kbs[0], "relation_count", None) == 0:
        first = kbs[0]
        raise ValueError(
            f"the first knowledge base ({first.kind}:{first.source}) has no relations, so no record "
            "(head, relation, tail) can be built from it; put a knowledge base with relations first "
            "(umls:, slake-kg:, or a jsonl: file whose concepts have 'relations'); definition-only "
            "sources such as export-definitions output go after it"
        )


def _extract_mentions(extractor, texts: Sequence[str], progress: bool) -> dict[str, list]:
    """Entity mentions of every text (text -> the extractor's mentions), 512 texts per extractor call."""
    from tqdm.auto import tqdm

    mentions: dict[str, list] = {}
    chunk = 512
    with tqdm(total=len(texts), desc="entities", unit="text", disable=not progress, leave=False) as bar:
        for i in range(0, len(texts), chunk):
            part = texts[i : i + chunk]
            mentions.update(zip(part, extractor.extract(part)))
            bar.update(len(part))
    return mentions


def _kept_relations(
    concept: Concept, dropped: set[str], max_relations: int | None, filtered: Counter[str]
) -> list[tuple[str, str]]:
    """The ``(label, tail)`` relations of ``concept`` that pass the noise filter (drops counted in ``filtered``)."""
    kept = []
    for label, tail in concept.relations:
        if _norm_label(label) in dropped:
            filtered["dropped label"] += 1
        elif tail.strip().lower() == concept.name.strip().lower():
            filtered["self relation"] += 1
        elif label.strip() and tail.strip():
            kept.append((label.replace("_", " ").strip(), tail.strip()))
    limited = _limit(kept, max_relations)
    filtered["over max_relations"] += len(kept) - len(limited)
    return limited


def _collect_records(
    qa: Sequence[VQARecord],
    sources: Sequence[str],
    mentions: dict[str, list],
    concepts: dict[str, Concept],
    extra_defs: dict[str, str],
    dropped: set[str],
    policy: str,
    config: BuildConfig,
    filtered: Counter[str],
) -> tuple[list[KnowledgeRecord], int]:
    """One record per (QA pair, head entity, kept relation), de-duplicated and sorted by (image, dataset
    order, head, relation, tail); also the number of QA pairs with at least one head entity."""
    from tqdm.auto import tqdm

    out: dict[KnowledgeRecord, tuple] = {}
    with_entities = 0
    for index, (record, source) in enumerate(
        tqdm(list(zip(qa, sources)), desc="records", disable=not config.progress, leave=False)
    ):
        heads = (
            [concepts[m.concept_id] for m in mentions.get(source, []) if m.concept_id in concepts]
            if source
            else []
        )
        heads = list({c.concept_id: c for c in heads}.values())
        with_entities += bool(heads)
        for concept in heads:
            definition = concept.definition or extra_defs.get(concept.concept_id)
            if not definition and policy == "drop":
                filtered["no definition"] += len(concept.relations)
                continue
            for label, tail in _kept_relations(concept, dropped, config.max_relations, filtered):
                item = KnowledgeRecord(
                    record.image_name,
                    record.question,
                    record.answer,
                    concept.name,
                    tail,
                    definition or None,
                    label,
                )
                if item in out:
                    filtered["duplicate"] += 1
                else:
                    out[item] = (_natural(record.image_name), index, concept.name, label, tail)
    return sorted(out, key=out.__getitem__), with_entities


def build_knowledge(config: BuildConfig, kbs: Sequence[KnowledgeBase]) -> BuildResult:
    """Build the knowledge records of ``config`` from ``kbs`` (the first gives entities and relations)."""
    _check_build_inputs(config, kbs)
    skip_log = SkipLog()
    qa: list[VQARecord] = load_split(
        config.dataset,
        config.root,
        config.split,
        layout=config.layout,
        image_dir=config.image_dir,
        lang=config.lang,
        val_fraction=config.val_fraction,
        seed=config.seed,
        skip_log=skip_log if config.skip_missing else None,
    )
    primary = kbs[0]
    policy = resolve_missing_definition(config.missing_definition, primary)
    extractor = make_extractor(
        primary,
        config.pipeline,
        overlap=config.overlap,
        model=config.spacy_model,
        linker=config.linker,
        linker_config=LinkerConfig(
            threshold=config.linker_threshold, index_dir=config.linker_index, progress=config.progress
        ),
    )
    sources = [entity_source_text(r.question, r.answer) for r in qa]
    texts = sorted({s for s in sources if s})
    mentions = _extract_mentions(extractor, texts, config.progress)
    concept_ids = {m.concept_id for ms in mentions.values() for m in ms}
    concepts = primary.concepts(concept_ids)
    extra_defs = _fill_definitions(concepts, kbs[1:])
    dropped = {_norm_label(x) for x in primary.dropped_relations | config.drop_relations}
    filtered: Counter[str] = Counter()
    records, with_entities = _collect_records(
        qa, sources, mentions, concepts, extra_defs, dropped, policy, config, filtered
    )
    return BuildResult(
        records,
        getattr(extractor, "description", extractor.name),
        len(qa),
        with_entities,
        skip_log,
        +filtered,
        policy,
    )
