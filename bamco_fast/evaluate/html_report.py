"""A self-contained HTML page of a VQA run's answers: every question, its image and every verdict.

:func:`write_report_html` reads a run folder of ``python -m bamco_fast.train vqa`` (``predictions_<split>.jsonl``,
``report_<split>.json``, ``run.json``) and writes one HTML file that needs nothing else: images are
embedded as small JPEG ``data:`` URIs (each distinct image once), the style sheet and script are inline
(no CDN, no network). At the top: the summary table of the run's report (every protocol with n, score
and 95% bootstrap interval, the no-model baselines beside it). Below: one entry per evaluated question
(question, knowledge text, gold answer, prediction, the verdict of every rule of
:func:`~bamco_fast.evaluate.report_rows.question_verdicts`, the retrieved intra-class entity and a strip
of the images drawn for it), rendered in pages by the script with filters and sorting.

The strip reproduces the run's draw: the intra-class bank (rebuilt by
:func:`bamco_fast.inference.load_run`, or the model given in memory) draws ``K`` images of the retrieved
class seeded by the question id; ``K = model.config.num_intra_images`` or, when 0, the knowledge space's
``config.num_images``. Runs with plain towers or without the intra-class branch have no strip.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path

from .html_assets import PAGE_CSS, REPORT_JS
from .report_rows import image_files, intra_draw, knowledge_text, question_verdicts
from .thumbnails import file_thumbnail, pixels_thumbnail

__all__ = ["ReportPageOptions", "build_report_html", "find_split", "write_report_html"]


@dataclass(frozen=True)
class ReportPageOptions:
    """Settings of the page.

    Attributes:
        thumb_size: longer side of a question image's thumbnail, px.
        strip_show: how many of the ``K`` drawn intra-class images the strip shows.
        strip_size: longer side of an intra-class thumbnail, px (bank images are never enlarged).
        page_size: questions per page when the page opens (25, 50, 100 or 200).
    """

    thumb_size: int = 160
    strip_show: int = 6
    strip_size: int = 96
    page_size: int = 50

    def __post_init__(self) -> None:
        for name in ("thumb_size", "strip_show", "strip_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        if self.page_size not in (25, 50, 100, 200):
            raise ValueError(f"page_size: expected 25, 50, 100 or 200, got {self.page_size}")


def find_split(run_dir: Path | str, split: str | None = None) -> str:
    """The evaluated split of ``run_dir``: ``split`` when its predictions file exists, else the only one.

    Raises:
        ValueError: ``run_dir`` is not a folder, has no ``predictions_<split>.jsonl``, or has several
            and ``split`` is not given (the message lists them).
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        what = "is a file" if run_dir.exists() else "does not exist"
        raise ValueError(f"RUN: expected a VQA run folder, got {str(run_dir)!r}, which {what}")
    found = sorted(p.name[len("predictions_") : -len(".jsonl")] for p in run_dir.glob("predictions_*.jsonl"))
    if split is not None:
        if split not in found:
            raise ValueError(
                f"--split: expected a split with a predictions file in {run_dir} ({', '.join(found) or 'none'}), "
                f"got {split!r}"
            )
        return split
    if len(found) != 1:
        raise ValueError(
            f"RUN: expected one predictions_<split>.jsonl in {run_dir}, found "
            + (f"{len(found)} ({', '.join(found)}); choose one with --split" if found else "none")
        )
    return found[0]


@dataclass
class _Intra:
    """What the strips need: the bank, K, and why there is no strip (``""`` when there is one)."""

    bank: object = None
    k: int = 0
    missing: str = ""


_PLAIN = "plain towers: no knowledge space and no intra-class branch, so no images are drawn"
_NO_BRANCH = "no intra-class branch in this run (model.use_intra_class=false): no images are drawn"


def _intra_from_model(model, info: dict) -> _Intra:
    """The strips of ``model`` (a :class:`~bamco_fast.models.VQAModel`) for a run described by ``info``."""
    if info.get("plain_towers"):
        return _Intra(missing=_PLAIN)
    if model.intra_bank is None or not model.config.use_intra_class:
        return _Intra(missing=_NO_BRANCH)
    k = int(model.config.num_intra_images or model.knowledge_space.config.num_images)
    return _Intra(model.intra_bank, k)


def _load_intra(run_dir: Path, info: dict) -> _Intra:
    """Rebuild the run's model (:func:`bamco_fast.inference.load_run`, CPU) for its intra-class bank."""
    if info.get("plain_towers"):
        return _Intra(missing=_PLAIN)
    if not info.get("bank"):
        return _Intra(missing=_NO_BRANCH)
    from ..inference import RunError, load_run

    try:
        model = load_run(run_dir, device="cpu").model
    except (RunError, OSError, ValueError) as exc:
        return _Intra(missing=f"no intra-class images shown: the run's model could not be loaded ({exc})")
    return _intra_from_model(model, info)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _page_rows(run_dir: Path, rows, report: dict, intra: _Intra, options: ReportPageOptions):
    """``(rows as JSON objects, images: id -> data URI)``."""
    images: dict[str, str] = {}
    by_file: dict[str, str | None] = {}
    closed_rule = report.get("closed_rule", "dataset")
    steps = report.get("normalization")  # [] when the report was scored with no normalisation
    steps = {"steps": tuple(steps)} if isinstance(steps, list) else {}
    out = []
    for n, (row, path) in enumerate(zip(rows, image_files(run_dir, rows))):
        key = str(path) if path is not None else ""
        if key not in by_file:
            uri = file_thumbnail(path, options.thumb_size) if path is not None else None
            by_file[key] = f"i{len(by_file)}" if uri else None
            if uri:
                images[by_file[key]] = uri
        kind, text = knowledge_text(row)
        entity = row.extra.get("retrieved_entity")
        item = {
            "n": n,
            "qid": row.qid,
            "q": row.question or "",
            "a": row.answer or "",
            "p": row.prediction,
            "v": question_verdicts(
                row.prediction,
                row.answer or "",
                row.answer_type,
                closed_rule=closed_rule,
                **steps,
            ),
            "img": by_file[key],
            "name": str(row.extra.get("image_name") or (path.name if path else "")),
            "kk": kind,
            "kt": text,
            "ent": entity if isinstance(entity, str) else None,
            "strip": None,
        }
        draw = intra_draw(intra.bank, item["ent"], row.qid, intra.k)
        if draw is not None:
            shown = [int(i) for i in draw.indices[: options.strip_show]]
            for index in shown:
                if f"b{index}" not in images:
                    images[f"b{index}"] = pixels_thumbnail(intra.bank.images[index], options.strip_size)
            item["strip"] = {"ids": [f"b{i}" for i in shown], "drawn": draw.drawn, "distinct": draw.distinct}
        out.append(item)
    return out, images


_SORTS = (
    ("order", "question order"),
    ("wrong", "wrong first"),
    ("recall", "recall, lowest first"),
    ("entity", "retrieved entity"),
    ("image", "image"),
    ("answer", "gold answer"),
    ("qid", "question id"),
)
_COLUMNS = (
    "#",
    "image",
    "question and knowledge text",
    "gold answer",
    "prediction",
    "verdicts",
    "retrieved entity and intra-class images",
)
_LEGEND = (
    "Verdicts: <b>exact</b> = normalised exact match (the closed or open exact protocol); <b>recall</b> = "
    "LLaVA-Med token recall; <b>containment</b> = the published BaMCo containment; <b>published rules</b> = "
    "yes/no answers by exact lower-cased text, every other answer by containment. A question marked "
    "<span class='warn'>correct only under containment</span> is wrong by exact match but counted correct by "
    "the published rules."
)


def _controls(rows: list[dict], page_size: int) -> str:
    wrong = sum(1 for r in rows if not r["v"]["exact"])
    lenient = sum(1 for r in rows if r["v"]["lenient"])
    sorts = "".join(f'<option value="{key}">{label}</option>' for key, label in _SORTS)
    sizes = "".join(f'<option value="{n}">{n}</option>' for n in (25, 50, 100, 200))
    return (
        '<div class="controls" id="controls">'
        '<label>questions <select id="side"><option value="all">all</option><option value="open">open</option>'
        '<option value="closed">closed</option></select></label>'
        f'<label><input type="checkbox" id="wrong"> wrong only ({wrong})</label>'
        f'<label><input type="checkbox" id="lenient"> correct only under containment ({lenient})</label>'
        '<label>search <input type="search" id="text" placeholder="question, answer, entity"></label>'
        f'<label>sort <select id="sort">{sorts}</select></label>'
        f'<label>per page <select id="size">{sizes}</select></label>'
        '<button id="prev" type="button">&#8249; previous</button><span id="page"></span>'
        '<button id="next" type="button">next &#8250;</button><span id="count" class="muted"></span>'
        "</div>"
    )


def _header(run_dir: Path, split: str, info: dict, rows: list, intra: _Intra) -> str:
    splits = info.get("splits") if isinstance(info.get("splits"), dict) else {}
    dataset = splits.get("dataset") or (rows[0].extra.get("dataset") if rows else "") or "?"
    parts = [f"{len(rows)} questions of {html.escape(str(dataset))} {html.escape(split)}"]
    if info.get("llm"):
        parts.append(f"LLM {html.escape(Path(str(info['llm'])).name)}")
    if intra.bank is not None:
        parts.append(
            f"intra-class bank: {len(intra.bank.class_names)} classes, K = {intra.k} images drawn per question "
            f"(sampling by {html.escape(intra.bank.sampling)})"
        )
    title = f"Answers of {html.escape(str(run_dir))}: {html.escape(str(dataset))} {html.escape(split)}"
    return f'<h1>{title}</h1><p class="meta">{"; ".join(parts)}.</p>'


def build_report_html(
    run_dir: Path | str,
    split: str | None = None,
    *,
    model=None,
    options: ReportPageOptions | None = None,
) -> str:
    """The HTML text of the page (see the module docstring).

    Args:
        run_dir: a run folder of ``python -m bamco_fast.train vqa``.
        split: the evaluated split (default: the only ``predictions_<split>.jsonl`` in the folder).
        model: the run's :class:`~bamco_fast.models.VQAModel` when it is in memory (the training stage);
            otherwise the run is loaded on CPU with :func:`bamco_fast.inference.load_run` for its bank.
        options: page settings.
    """
    from ..metrics import read_predictions
    from .html_summary import summary_html

    options = options or ReportPageOptions()
    run_dir = Path(run_dir)
    split = find_split(run_dir, split)
    rows = read_predictions(run_dir / f"predictions_{split}.jsonl")
    report = _read_json(run_dir / f"report_{split}.json")
    info = _read_json(run_dir / "run.json")
    intra = _intra_from_model(model, info) if model is not None else _load_intra(run_dir, info)
    items, images = _page_rows(run_dir, rows, report, intra, options)
    data = {"rows": items, "images": images, "page_size": options.page_size, "no_strip": intra.missing}
    blob = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    columns = "".join(f"<th>{h}</th>" for h in _COLUMNS)
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>VQA answers: {html.escape(run_dir.absolute().name)} {html.escape(split)}</title>"
        f"<style>{PAGE_CSS}</style></head><body>\n"
        f"{_header(run_dir, split, info, rows, intra)}\n<h2>Scores</h2>\n{summary_html(report)}\n"
        f'<h2 id="questions">Questions</h2><p class="note">{_LEGEND}</p>\n{_controls(items, options.page_size)}\n'
        f'<table class="questions"><thead><tr>{columns}</tr></thead><tbody id="rows"></tbody></table>\n'
        '<p id="none" class="note" hidden>No question matches these filters.</p>\n'
        '<noscript><p class="note">The questions are listed by a script: enable JavaScript.</p></noscript>\n'
        f'<script id="report-data" type="application/json">{blob}</script>\n'
        f"<script>{REPORT_JS}</script>\n</body></html>\n"
    )


def write_report_html(
    run_dir: Path | str,
    split: str | None = None,
    *,
    out: Path | str | None = None,
    model=None,
    options: ReportPageOptions | None = None,
) -> Path:
    """Write :func:`build_report_html` to ``out`` (default ``run_dir/report_<split>.html``) atomically;
    returns the path."""
    from ..data.jsonio import atomic_write_text

    split = find_split(run_dir, split)
    path = Path(out) if out is not None else Path(run_dir) / f"report_{split}.html"
    atomic_write_text(path, build_report_html(run_dir, split, model=model, options=options))
    return path
