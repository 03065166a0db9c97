"""Entity extraction from QA pairs, linked to a knowledge base.

Which text is parsed (paper §2, "Knowledge Source"): answer "yes" -> the question; answer "no" ->
nothing; any other answer (open questions, and closed questions answered with a choice such as
"Liver") -> the answer. :func:`entity_source_text` implements this rule.

Two pipelines produce the same :class:`Mention` lists:

``scispacy``  the scispaCy model ``en_core_sci_sm`` (when installed; any spaCy pipeline package or
              folder can stand in) finds entity spans; each span (an abbreviation resolved to its
              long form) is linked to the knowledge base by scispaCy's ``EntityLinker``
              (:mod:`.linking`), or with ``linker="exact"`` by name/alias lookup (case-, whitespace-
              and plural-insensitive).
``offline``   no model: spaCy's blank English tokenizer, scispaCy's abbreviation detector and a
              dictionary matcher (spaCy ``PhraseMatcher`` on lower-cased tokens) over the knowledge
              base's names and aliases. Spans made only of stop words, punctuation or numbers are
              ignored; a short form of a detected abbreviation takes the concept of its long form.

Names are looked up in bulk (:meth:`KnowledgeBase.match_names`) with every token n-gram of the texts
as a candidate, so a large source such as UMLS is streamed once instead of being loaded.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from .kb_base import KnowledgeBase
from .schema import NameHit, compact_key

__all__ = [
    "LINKERS",
    "PIPELINES",
    "Mention",
    "OfflineExtractor",
    "SciSpacyExtractor",
    "entity_source_text",
    "make_extractor",
]

PIPELINES = ("auto", "offline", "scispacy")
SCISPACY_MODEL = "en_core_sci_sm"
MAX_NGRAM = 8
_INSTALL = "pip install bamco_fast[knowledge]"


@dataclass(frozen=True)
class Mention:
    """A span of a text linked to a knowledge-base concept."""

    start: int
    end: int
    text: str
    concept_id: str


def entity_source_text(question: str, answer: str) -> str | None:
    """The text whose entities are extracted for a QA pair (see the module docstring)."""
    normalized = answer.strip().lower()
    if normalized == "no" or not normalized:
        return None
    return question if normalized == "yes" else answer


def _import_spacy():
    try:
        import scispacy.abbreviation  # noqa: F401  (registers the "abbreviation_detector" factory)
        import spacy
    except ImportError as exc:
        raise ImportError(f"knowledge building needs spaCy and scispaCy: {_INSTALL}") from exc
    return spacy


def scispacy_model_available() -> bool:
    """Whether ``en_core_sci_sm`` is installed as a package."""
    spacy = _import_spacy()
    return bool(spacy.util.is_package(SCISPACY_MODEL))


def _key_variants(key: str) -> list[str]:
    """The key and its singular forms (``eyes`` -> ``eye``, ``masses`` -> ``mass``)."""
    variants = [key]
    if len(key) > 3 and key.endswith("s") and not key.endswith("ss"):
        variants.append(key[:-1])
        if key.endswith("es"):
            variants.append(key[:-2])
    return variants


def _best(hits: list[NameHit]) -> NameHit:
    return min(hits, key=lambda h: (not h.preferred, h.concept_id))


def _trivial(span) -> bool:
    return all(t.is_stop or t.is_punct or t.like_num or t.is_space for t in span)


class OfflineExtractor:
    """Dictionary matching over a knowledge base's names and aliases (no pretrained model)."""

    name = "offline"

    def __init__(self, kb: KnowledgeBase, *, overlap: str = "all") -> None:
        if overlap not in ("all", "longest"):
            raise ValueError(f"overlap must be 'all' or 'longest', got {overlap!r}")
        spacy = _import_spacy()
        self.kb = kb
        self.overlap = overlap
        self.nlp = spacy.blank("en")
        self.nlp.add_pipe("sentencizer")
        self.nlp.add_pipe("abbreviation_detector")

    def _candidate_keys(self, docs) -> set[str]:
        keys: set[str] = set()
        for doc in docs:
            for i in range(len(doc)):
                for j in range(i + 1, min(len(doc), i + MAX_NGRAM) + 1):
                    keys.update(_key_variants(compact_key(doc[i:j].text)))
        return keys

    def extract(self, texts: Sequence[str]) -> list[list[Mention]]:
        from spacy.matcher import PhraseMatcher
        from spacy.util import filter_spans

        with warnings.catch_warnings():
            # scispaCy's abbreviation detector warns once per doc when it has no global patterns
            warnings.filterwarnings("ignore", message=r".*\[W036\]")
            docs = list(self.nlp.pipe(texts))
        hits = self.kb.match_names(self._candidate_keys(docs))
        matcher = PhraseMatcher(self.nlp.vocab, attr="LOWER")
        label_to_concept: dict[str, str] = {}
        for key, key_hits in hits.items():
            best = _best(key_hits)
            label_to_concept[key] = best.concept_id
            surfaces = {h.name for h in key_hits}
            patterns = [self.nlp.make_doc(s) for s in sorted(surfaces)]
            patterns += [self.nlp.make_doc(s + suffix) for s in sorted(surfaces) for suffix in ("s", "es")]
            matcher.add(key, patterns)
        results: list[list[Mention]] = []
        for doc in docs:
            spans = []
            for match_id, start, end in matcher(doc):
                span = doc[start:end]
                if not _trivial(span):
                    spans.append((span, label_to_concept[self.nlp.vocab.strings[match_id]]))
            spans = self._apply_abbreviations(doc, spans, label_to_concept)
            if self.overlap == "longest":
                keep = {(s.start, s.end) for s in filter_spans([s for s, _ in spans])}
                spans = [(s, c) for s, c in spans if (s.start, s.end) in keep]
            mentions = {
                (s.start_char, s.end_char, c): Mention(s.start_char, s.end_char, s.text, c) for s, c in spans
            }
            results.append(sorted(mentions.values(), key=lambda m: (m.start, m.end, m.concept_id)))
        return results

    @staticmethod
    def _apply_abbreviations(doc, spans, label_to_concept):
        """Short forms of abbreviations defined in the text take the concept of their long form."""
        abbreviations = getattr(doc._, "abbreviations", [])
        if not abbreviations:
            return spans
        by_short = {}
        for short in abbreviations:
            long_key = compact_key(short._.long_form.text)
            concept = next(
                (label_to_concept[k] for k in _key_variants(long_key) if k in label_to_concept), None
            )
            by_short[(short.start, short.end)] = concept
        out = []
        for span, concept in spans:
            if (span.start, span.end) in by_short:
                concept = by_short[(span.start, span.end)]
                if concept is None:
                    continue
            out.append((span, concept))
        return out


LINKERS = ("tfidf", "exact")


class SciSpacyExtractor:
    """Entity spans of a spaCy/scispaCy model (``en_core_sci_sm`` by default), linked to the knowledge base.

    ``linker="tfidf"`` (default) runs scispaCy's ``EntityLinker`` over the knowledge base
    (:mod:`.linking`: character-3-gram TF-IDF nearest names, similarity above ``threshold``);
    ``linker="exact"`` looks the span text up by name/alias (case-, whitespace- and
    plural-insensitive), as the authors' pipeline did through the UMLS search. Abbreviations are
    resolved to their long forms either way. ``model`` is a package name or a pipeline folder
    (``spacy.load``).
    """

    name = "scispacy"

    def __init__(
        self,
        kb: KnowledgeBase,
        *,
        model: str = SCISPACY_MODEL,
        linker: str = "tfidf",
        linker_config=None,
    ) -> None:
        if linker not in LINKERS:
            raise ValueError(f"linker must be one of {list(LINKERS)}, got {linker!r}")
        spacy = _import_spacy()
        try:
            self.nlp = spacy.load(model)
        except OSError as exc:
            raise ImportError(
                f"the spaCy model {model!r} is not installed or not a pipeline folder; install "
                f"{SCISPACY_MODEL} from the scispaCy releases (see docs/data_and_knowledge.md) "
                "or use --pipeline offline"
            ) from exc
        if "abbreviation_detector" not in self.nlp.pipe_names:
            self.nlp.add_pipe("abbreviation_detector")
        self.kb = kb
        self.model = model
        self.linker_name = linker
        self.description = f"scispacy (model {model}, {linker} linker)"
        self._linker = None
        if linker == "tfidf":
            from .linking import LinkerConfig, build_entity_linker

            self._linker = build_entity_linker(kb, linker_config or LinkerConfig())

    def _parse(self, texts: Sequence[str]):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*\[W036\]")
            return list(self.nlp.pipe(texts))

    def extract(self, texts: Sequence[str]) -> list[list[Mention]]:
        docs = self._parse(texts)
        if self._linker is not None:
            results = []
            for doc in docs:
                doc = self._linker(doc)
                mentions = {
                    (ent.start_char, ent.end_char): Mention(
                        ent.start_char, ent.end_char, ent.text, ent._.kb_ents[0][0]
                    )
                    for ent in doc.ents
                    if ent._.kb_ents and not _trivial(ent)
                }
                results.append(sorted(mentions.values(), key=lambda m: (m.start, m.end)))
            return results
        spans_per_doc = []
        for doc in docs:
            long_forms = {(a.start, a.end): a._.long_form.text for a in getattr(doc._, "abbreviations", [])}
            spans_per_doc.append(
                [
                    (ent, long_forms.get((ent.start, ent.end), ent.text))
                    for ent in doc.ents
                    if not _trivial(ent)
                ]
            )
        keys = {v for spans in spans_per_doc for _, text in spans for v in _key_variants(compact_key(text))}
        hits = self.kb.match_names(keys)
        results = []
        for spans in spans_per_doc:
            mentions = []
            for ent, text in spans:
                found = next((hits[k] for k in _key_variants(compact_key(text)) if k in hits), None)
                if found:
                    mentions.append(Mention(ent.start_char, ent.end_char, ent.text, _best(found).concept_id))
            results.append(mentions)
        return results


def _model_available(model: str) -> bool:
    from pathlib import Path

    spacy = _import_spacy()
    return Path(model).is_dir() or bool(spacy.util.is_package(model))


def make_extractor(
    kb: KnowledgeBase,
    pipeline: str = "auto",
    *,
    overlap: str = "all",
    model: str = SCISPACY_MODEL,
    linker: str = "tfidf",
    linker_config=None,
):
    """``auto`` picks ``scispacy`` when ``model`` (default ``en_core_sci_sm``) is installed, else ``offline``."""
    if pipeline not in PIPELINES:
        raise ValueError(f"pipeline must be one of {list(PIPELINES)}, got {pipeline!r}")
    if pipeline == "auto":
        pipeline = "scispacy" if _model_available(model) else "offline"
    if pipeline == "scispacy":
        return SciSpacyExtractor(kb, model=model, linker=linker, linker_config=linker_config)
    return OfflineExtractor(kb, overlap=overlap)
