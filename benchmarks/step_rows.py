"""Rows of a training-step benchmark: the fastest timed step, its pytest ``extra_info`` and a table.

A row is a dict with at least ``row`` (its name), ``batch`` (B), ``seconds`` (the fastest step's total),
``samples_per_s`` (B / seconds), ``times`` (that step's phase seconds and ``total``), ``all_seconds``
(every timed step's total) and ``facts`` (one-time costs of its set-up). :mod:`bench_pretrain_step` and
:mod:`bench_vqa_step` add their own fields (losses, peak memory) and columns.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch


def fastest_row(row: str, batch: int, results: Sequence) -> tuple[object, dict]:
    """The fastest of ``results`` (objects with a ``times`` dict holding ``total``) and the row's common
    fields (all but ``facts``)."""
    best = min(results, key=lambda r: r.times["total"])
    return best, {
        "row": row,
        "batch": batch,
        "seconds": best.times["total"],
        "samples_per_s": batch / best.times["total"],
        "times": best.times,
        "all_seconds": [r.times["total"] for r in results],
    }


def record_row(benchmark, out: dict, facts: dict, **extra) -> None:
    """Put row ``out`` into ``benchmark.extra_info``: its rate and rounded phase seconds, ``extra``, torch's
    thread count and version, the set-up's ``facts`` and the row's own."""
    benchmark.extra_info.update(
        row=out["row"],
        batch=out["batch"],
        samples_per_s=round(out["samples_per_s"], 4),
        profile_s={k: round(v, 4) for k, v in out["times"].items()},
        **extra,
        threads=torch.get_num_threads(),
        torch=torch.__version__,
        **facts,
        **out["facts"],
    )


def phase_table(
    rows: Sequence[dict],
    phases: Sequence[str],
    *,
    seconds_head: str,
    ratio: Callable[[dict], str],
    tail: dict[str, Callable[[dict], str]],
) -> str:
    """Markdown table, one line per row: B, step seconds, samples/s, ``ratio(row)`` (the "vs published"
    column), each phase's seconds with its share of the total, then one column per ``tail`` item
    (header -> cell)."""
    head = f"| row | B | {seconds_head} | samples/s | vs published | " + " | ".join([*phases, *tail]) + " |"
    lines = [head, "|" + "---|" * (5 + len(phases) + len(tail))]
    for r in rows:
        t = r["times"]
        share = [f"{t[p]:.2f} ({100 * t[p] / t['total']:.0f}%)" for p in phases]
        lines.append(
            f"| {r['row']} | {r['batch']} | {r['seconds']:.2f} | {r['samples_per_s']:.3f} | {ratio(r)} | "
            + " | ".join([*share, *(cell(r) for cell in tail.values())])
            + " |"
        )
    return "\n".join(lines)
