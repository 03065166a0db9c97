"""The UMLS Metathesaurus, read from its release files and streamed (never loaded whole).

Files (in ``folder`` or ``folder/META``), pipe-separated with a trailing ``|``:

=============  ===================================================================================
MRCONSO.RRF    CUI|LAT|TS|LUI|STT|SUI|ISPREF|AUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF
MRDEF.RRF      CUI|AUI|ATUI|SATUI|SAB|DEF|SUPPRESS|CVF
MRREL.RRF      CUI1|AUI1|STYPE1|REL|CUI2|AUI2|STYPE2|RELA|RUI|SRUI|SAB|SL|RG|DIR|SUPPRESS|CVF
MRSTY.RRF      CUI|TUI|STN|STY|ATUI|CVF        (read only when a semantic-type filter is given)
=============  ===================================================================================

What is used, as in the paper's pipeline (which queried the UMLS REST API):

* names: English atoms (``LAT=ENG``) of the source vocabularies ``sabs`` (default ``SNOMEDCT_US``),
  not suppressible; a name that belongs to several concepts resolves to the one for which it is a
  preferred term (``TTY`` PT), then to the smallest CUI;
* head and tail names: the UMLS preferred English name of the concept (``TS=P, STT=PF, ISPREF=Y``);
* definition: the first ``MRDEF`` row from ``def_sabs`` in priority order (default NCI, then MSH);
* relations: ``MRREL`` rows with ``CUI1`` = the concept, ``SAB`` in ``sabs`` and a non-empty ``RELA``
  (the label, ``_`` -> space), tail = ``CUI2``'s preferred name; the labels ``inverse_isa``,
  ``mapped_from``, ``mapped_to`` and ``inverse_was_a`` are dropped (as the paper's pipeline did).

Each query is one sequential pass over the files it needs, with a progress bar.
"""

from __future__ import annotations

from collections.abc import Iterator, Set
from pathlib import Path

from bamco_fast.data.errors import DataFormatError, MissingFileError

from .schema import Concept, NameHit, compact_key

__all__ = ["UMLS_DROPPED_RELATIONS", "UmlsKnowledgeBase"]

UMLS_DROPPED_RELATIONS = frozenset({"inverse isa", "mapped from", "mapped to", "inverse was a"})
_FIELDS = {"MRCONSO.RRF": 18, "MRDEF.RRF": 8, "MRREL.RRF": 16, "MRSTY.RRF": 6}
_SUPPRESSED = frozenset({"O", "E", "Y"})


def _tqdm(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, leave=False, mininterval=0.5)


class UmlsKnowledgeBase:
    kind = "umls"
    dropped_relations = UMLS_DROPPED_RELATIONS
    definitions_optional = False

    def __init__(
        self,
        folder: Path,
        *,
        sabs: tuple[str, ...] = ("SNOMEDCT_US",),
        def_sabs: tuple[str, ...] = ("NCI", "MSH"),
        semantic_types: frozenset[str] | None = None,
        include_suppressible: bool = False,
        progress: bool = True,
    ) -> None:
        folder = Path(folder)
        if not folder.is_dir():
            raise MissingFileError("UMLS Metathesaurus folder not found", path=folder)
        if not (folder / "MRCONSO.RRF").is_file() and (folder / "META" / "MRCONSO.RRF").is_file():
            folder = folder / "META"
        needed = ["MRCONSO.RRF", "MRDEF.RRF", "MRREL.RRF"] + (["MRSTY.RRF"] if semantic_types else [])
        for name in needed:
            if not (folder / name).is_file():
                raise MissingFileError(
                    f"UMLS release file {name} missing (a Metathesaurus folder needs {needed})",
                    path=folder / name,
                )
        self.source = folder
        self.sabs = frozenset(sabs)
        self.def_sabs = tuple(def_sabs)
        self.semantic_types = semantic_types
        self.include_suppressible = include_suppressible
        self.progress = progress

    @property
    def relation_count(self) -> int | None:
        """0 when ``MRREL.RRF`` is empty; ``None`` (unknown without reading it) otherwise."""
        return 0 if (self.source / "MRREL.RRF").stat().st_size == 0 else None

    def _rows(self, name: str) -> Iterator[list[str]]:
        """Yield the fields of each line of an RRF file, checking the column count."""
        path = self.source / name
        expected = _FIELDS[name]
        bar = _tqdm(path.stat().st_size, name) if self.progress else None
        pending = 0
        try:
            with path.open("rb") as handle:
                for number, raw in enumerate(handle, start=1):
                    pending += len(raw)
                    if bar is not None and pending > 1 << 22:
                        bar.update(pending)
                        pending = 0
                    try:
                        line = raw.decode("utf-8").rstrip("\r\n")
                    except UnicodeDecodeError:
                        raise DataFormatError("not UTF-8 text", path=path, line=number) from None
                    if not line:
                        continue
                    fields = line.split("|")
                    if fields[-1] == "":
                        fields.pop()
                    if len(fields) != expected:
                        raise DataFormatError(
                            f"expected {expected} '|'-separated fields (UMLS RRF format), got {len(fields)}",
                            path=path,
                            line=number,
                        )
                    yield fields
        finally:
            if bar is not None:
                bar.close()

    def _allowed_cuis(self, cuis: Set[str]) -> set[str]:
        if not self.semantic_types:
            return set(cuis)
        return {
            f[0]
            for f in self._rows("MRSTY.RRF")
            if f[0] in cuis and (f[1] in self.semantic_types or f[3] in self.semantic_types)
        }

    def _linkable_names(self) -> Iterator[list[str]]:
        """MRCONSO rows that name a concept for linking: English, a selected vocabulary, not suppressed."""
        for f in self._rows("MRCONSO.RRF"):
            if f[1] != "ENG" or f[11] not in self.sabs:
                continue
            if f[16] in _SUPPRESSED and not self.include_suppressible:
                continue
            yield f

    def match_names(self, keys: Set[str]) -> dict[str, list[NameHit]]:
        found: dict[str, dict[str, NameHit]] = {}
        for f in self._linkable_names():
            key = compact_key(f[14])
            if key not in keys:
                continue
            hits = found.setdefault(key, {})
            preferred = f[12] == "PT"
            old = hits.get(f[0])
            if old is None or (preferred and not old.preferred):
                hits[f[0]] = NameHit(f[0], f[14], preferred)
        allowed = self._allowed_cuis({c for hits in found.values() for c in hits})
        result = {}
        for key, hits in found.items():
            kept = sorted(
                (h for h in hits.values() if h.concept_id in allowed),
                key=lambda h: (not h.preferred, h.concept_id),
            )
            if kept:
                result[key] = kept
        return result

    def iter_names(self) -> Iterator[tuple[str, str, bool]]:
        """English names of the selected vocabularies (one MRCONSO pass, then the MRSTY filter)."""
        names: dict[str, dict[str, bool]] = {}
        for f in self._linkable_names():
            seen = names.setdefault(f[0], {})
            seen[f[14]] = seen.get(f[14], False) or f[12] == "PT"
        allowed = self._allowed_cuis(set(names))
        for cui in sorted(allowed):
            for name, preferred in names[cui].items():
                yield cui, name, preferred

    def _preferred_names(self, cuis: Set[str]) -> dict[str, str]:
        best: dict[str, tuple[int, str]] = {}
        for f in self._rows("MRCONSO.RRF"):
            if f[0] not in cuis or f[1] != "ENG":
                continue
            rank = 0 if (f[2] == "P" and f[4] == "PF" and f[6] == "Y") else (1 if f[11] in self.sabs else 2)
            if f[0] not in best or rank < best[f[0]][0]:
                best[f[0]] = (rank, f[14])
        return {cui: name for cui, (_, name) in best.items()}

    def concepts(self, concept_ids: Set[str]) -> dict[str, Concept]:
        ids = set(concept_ids)
        if not ids:
            return {}
        priority = {sab: i for i, sab in enumerate(self.def_sabs)}
        definitions: dict[str, tuple[int, str]] = {}
        for f in self._rows("MRDEF.RRF"):
            if f[0] in ids and f[4] in priority and f[5].strip():
                rank = priority[f[4]]
                if f[0] not in definitions or rank < definitions[f[0]][0]:
                    definitions[f[0]] = (rank, f[5].strip())
        relations: dict[str, list[tuple[str, str]]] = {}
        for f in self._rows("MRREL.RRF"):
            if f[0] in ids and f[10] in self.sabs and f[7] and f[0] != f[4]:
                if f[14] in _SUPPRESSED and not self.include_suppressible:
                    continue
                relations.setdefault(f[0], []).append((f[7].replace("_", " "), f[4]))
        tail_ids = {cui for rels in relations.values() for _, cui in rels}
        names = self._preferred_names(ids | tail_ids)
        result = {}
        for cui in sorted(ids):
            if cui not in names:
                continue
            rels = tuple(
                dict.fromkeys((label, names[t]) for label, t in relations.get(cui, []) if t in names)
            )
            definition = definitions[cui][1] if cui in definitions else None
            result[cui] = Concept(cui, names[cui], definition, rels)
        return result
