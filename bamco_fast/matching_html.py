"""The matching evaluation as a page (paper Fig. 4): what the knowledge space ranks first for an image.

For a seeded sample of validation images, each model column (e.g. the untrained towers, the alignment
baseline, BaMCo) ranks the candidate entity, definition and relation strings for the image and the page
lists the top ``k`` of each kind, the true ones marked (the strings of that kind among the image's own
knowledge records). Candidates follow the ``"full"`` protocol of :mod:`bamco_fast.matching`: every
distinct string of that kind among the evaluation records; scores are cosine similarities
``s_t = <f1, f3_t>`` of the L2-normalised image embedding ``f1`` and string embeddings ``f3``; ties keep
the candidates' id order (as :func:`~bamco_fast.matching.match_accuracy`), so a record's top-``k`` hit
here is the one the matching table counts.

The page is self-contained (inline style sheet, JPEG thumbnails as ``data:`` URIs, no script).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "MatchingPageOptions",
    "build_matching_html",
    "rank_candidates",
    "sample_images",
    "write_matching_html",
]

KIND_COLUMNS = (("entity", 0), ("definition", 1), ("relation", 2))  # columns of KnowledgeTable.record_text


@dataclass(frozen=True)
class MatchingPageOptions:
    """Settings: ``num_images`` sampled validation images (``seed``), ``top_k`` strings per kind,
    ``thumb_size`` px (longer side of each thumbnail)."""

    num_images: int = 24
    seed: int = 0
    top_k: int = 5
    thumb_size: int = 160

    def __post_init__(self) -> None:
        for name in ("num_images", "top_k", "thumb_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")


def sample_images(total: int, n: int, seed: int) -> list[int]:
    """``min(n, total)`` distinct image indices of ``range(total)``, ``randperm`` seeded with ``seed``, sorted."""
    order = torch.randperm(total, generator=torch.Generator().manual_seed(int(seed)))
    return sorted(order[: min(n, total)].tolist())


def rank_candidates(query: torch.Tensor, strings: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
    """Candidate string ids ``(C,)`` int64 ordered by cosine score ``strings[c] @ query``, best first.

    ``query`` ``(D,)`` and ``strings`` ``(T, D)`` are L2-normalised; ties keep ``candidates`` order.
    """
    scores = strings[candidates].float() @ query.float()
    return candidates[torch.argsort(scores, descending=True, stable=True)]


def _ranked_list(ranked: list[int], true: set[int], strings: tuple[str, ...], k: int) -> str:
    items = []
    for sid in ranked[:k]:
        text = html.escape(strings[sid])
        mark = ' class="hit"' if sid in true else ""
        items.append(f'<li{mark} title="{text}">{"&#10003; " if sid in true else ""}{text}</li>')
    best = next((i for i, sid in enumerate(ranked) if sid in true), None)
    extra = ""
    if best is not None and best >= k:
        extra = (
            f'<div class="note">first true string at rank {best + 1} of {len(ranked)}: '
            f"{html.escape(strings[ranked[best]])}</div>"
        )
    return f'<ol class="rank">{"".join(items)}</ol>{extra}'


def _card(index: int, table, columns, candidates, true, options: MatchingPageOptions) -> tuple[str, dict]:
    """One image's card and its hits ``{(column, kind): (top-1 hit, top-k hit)}``."""
    from .evaluate.thumbnails import file_thumbnail

    uri = file_thumbnail(table.image_paths[index], options.thumb_size)
    image = f'<img class="thumb" src="{uri}" alt="">' if uri else '<span class="muted">no image</span>'
    n_records = int((table.record_image == index).sum())
    heads = sorted({table.strings[s] for s in true["entity"]})
    blocks, hits = [], {}
    for name, (image_emb, string_emb) in columns.items():
        parts = [f"<h3>{html.escape(name)}</h3>"]
        for kind, _ in KIND_COLUMNS:
            ranked = rank_candidates(image_emb[index], string_emb, candidates[kind]).tolist()
            hits[(name, kind)] = (
                ranked[0] in true[kind],
                any(s in true[kind] for s in ranked[: options.top_k]),
            )
            parts.append(f'<div class="kind">{kind}</div>')
            parts.append(_ranked_list(ranked, true[kind], table.strings, options.top_k))
        blocks.append(f'<div class="col">{"".join(parts)}</div>')
    caption = (
        f'<div class="qid">{html.escape(table.images[index])}<br>{n_records} knowledge records; true '
        f"entit{'y' if len(heads) == 1 else 'ies'}: {html.escape(', '.join(heads))}</div>"
    )
    card = f'<div class="card"><div class="pic">{image}{caption}</div><div class="cols">{"".join(blocks)}</div></div>'
    return card, hits


def _results_table(results: Mapping[str, Mapping[str, float]]) -> str:
    if not results:
        return ""
    names = list(results)
    keys: list[str] = []
    for scores in results.values():
        keys += [k for k in scores if k not in keys and not k.startswith("mean")]
    keys += [k for k in ("mean/no-intra", "mean") if any(k in r for r in results.values())]
    head = "".join(f'<th class="num">{html.escape(n)}</th>' for n in names)
    rows = []
    for key in keys:
        cells = "".join(
            f'<td class="num">{"-" if results[n].get(key) is None else f"{100 * results[n][key]:.1f}"}</td>'
            for n in names
        )
        rows.append(f"<tr><td>{html.escape(key)}</td>{cells}</tr>")
    return (
        '<div><h2>Matching table (all validation records, top-k accuracy %)</h2><table class="summary">'
        f"<thead><tr><th>task</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _sample_table(hits: list[dict], columns, k: int) -> str:
    head = "".join(f'<th class="num">{html.escape(n)}</th>' for n in columns)
    rows = []
    for kind, _ in KIND_COLUMNS:
        for j, label in ((0, "top-1"), (1, f"top-{k}")):
            cells = "".join(
                f'<td class="num">{sum(h[(n, kind)][j] for h in hits)} / {len(hits)}</td>' for n in columns
            )
            rows.append(f"<tr><td>image &rarr; {kind}, a true string in the {label}</td>{cells}</tr>")
    return (
        f'<div><h2>The sampled images</h2><table class="summary"><thead><tr><th>images with</th>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def build_matching_html(
    table,
    columns: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    *,
    results: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "Matching on the validation records",
    description: str = "",
    options: MatchingPageOptions | None = None,
) -> str:
    """The page's HTML.

    Args:
        table: the validation :class:`~bamco_fast.pretraining.KnowledgeTable` (``M`` images, ``T`` strings).
        columns: model name -> ``(image embeddings (M, D), string embeddings (T, D))``, both L2-normalised,
            rows in the order of ``table.images`` and ``table.strings``.
        results: the matching table of the run (model -> :func:`~bamco_fast.matching.matching_scores`).
        title, description: the page heading and a line under it.
        options: sample size, seed, ``k``, thumbnail size.
    """
    from .evaluate.html_assets import PAGE_CSS

    options = options or MatchingPageOptions()
    columns = {name: (img.detach().cpu(), txt.detach().cpu()) for name, (img, txt) in columns.items()}
    text_index = table.record_text.cpu()
    candidates = {kind: torch.unique(text_index[:, c]) for kind, c in KIND_COLUMNS}
    chosen = sample_images(len(table.images), options.num_images, options.seed)
    cards, hits = [], []
    for index in chosen:
        rows = (table.record_image.cpu() == index).nonzero().flatten()
        true = {kind: set(text_index[rows, c].tolist()) for kind, c in KIND_COLUMNS}
        card, hit = _card(index, table, columns, candidates, true, options)
        cards.append(card)
        hits.append(hit)
    counts = ", ".join(f"{len(candidates[kind])} {kind} strings" for kind, _ in KIND_COLUMNS)
    intro = (
        f"{len(chosen)} of {len(table.images)} validation images (seed {options.seed}); for each model, the top "
        f"{options.top_k} of {counts} by cosine similarity with the image embedding. "
        "&#10003; marks a true string (one of the image's own knowledge records)."
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{PAGE_CSS}</style></head><body>\n"
        f'<h1>{html.escape(title)}</h1><p class="meta">{html.escape(description)}</p>\n'
        f'<div class="tables">{_results_table(results or {})}\n{_sample_table(hits, columns, options.top_k)}</div>\n'
        f'<h2>Rankings</h2><p class="note">{intro}</p>\n<div class="cards">\n'
        + "\n".join(cards)
        + "\n</div>\n</body></html>\n"
    )


def write_matching_html(path: Path | str, table, columns, **kwargs) -> Path:
    """Write :func:`build_matching_html` (same arguments) to ``path`` atomically; returns ``path``."""
    from .data.jsonio import atomic_write_text

    path = Path(path)
    atomic_write_text(path, build_matching_html(table, columns, **kwargs))
    return path
