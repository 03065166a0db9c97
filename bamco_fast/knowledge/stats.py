"""Knowledge-source statistics (the shape of the paper's Table 1) and coverage of a reference file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .schema import KnowledgeRecord

__all__ = ["CoverageReport", "KnowledgeStats", "coverage", "format_stats_table", "knowledge_stats"]


@dataclass(frozen=True)
class KnowledgeStats:
    """Unique images, head entities, tail entities, relation labels, and the number of records."""

    images: int
    heads: int
    tails: int
    relations: int
    records: int


def knowledge_stats(records: Sequence[KnowledgeRecord]) -> KnowledgeStats:
    return KnowledgeStats(
        images=len({r.image for r in records}),
        heads=len({r.head_entity for r in records}),
        tails=len({r.tail_entity for r in records}),
        relations=len({r.relation for r in records}),
        records=len(records),
    )


def format_stats_table(rows: dict[str, KnowledgeStats]) -> str:
    """A Markdown table: ``| Dataset | # Images | # Head Entities | # Tail Entities | # Relations | All |``."""
    lines = [
        "| Dataset | # Images | # Head Entities | # Tail Entities | # Relations | All |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, s in rows.items():
        lines.append(f"| {name} | {s.images} | {s.heads} | {s.tails} | {s.relations} | {s.records} |")
    return "\n".join(lines)


def _key(r: KnowledgeRecord) -> tuple[str, str, str, str]:
    return (r.image, r.head_entity.lower(), r.relation.lower(), r.tail_entity.lower())


@dataclass(frozen=True)
class CoverageReport:
    """Share of the reference's distinct (image, head, relation, tail) items found in ours (case-insensitive)."""

    reference_items: int
    covered: int
    ours_items: int
    missing_examples: tuple[tuple[str, str, str, str], ...]

    @property
    def fraction(self) -> float:
        return self.covered / self.reference_items if self.reference_items else 1.0

    def format(self) -> str:
        lines = [
            f"coverage of reference (image, head, relation, tail) items: {self.covered}/{self.reference_items} "
            f"= {100 * self.fraction:.2f}% (ours: {self.ours_items} distinct items)"
        ]
        lines += [f"  missing e.g. {m}" for m in self.missing_examples]
        return "\n".join(lines)


def coverage(
    ours: Sequence[KnowledgeRecord], reference: Sequence[KnowledgeRecord], examples: int = 5
) -> CoverageReport:
    ours_keys = {_key(r) for r in ours}
    ref_keys = {_key(r) for r in reference}
    missing = sorted(ref_keys - ours_keys)
    return CoverageReport(
        len(ref_keys), len(ref_keys) - len(missing), len(ours_keys), tuple(missing[:examples])
    )
