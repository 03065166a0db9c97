"""Markdown table of a ``bench_bamco_loss.py`` run (the table in benchmarks/README.md).

    pytest benchmarks/bench_bamco_loss.py --benchmark-only --benchmark-json=loss.json
    python benchmarks/loss_table.py loss.json

One row per (B, C, mode): the ``min`` time of each provider, cpp's speed-up over the official peer and
over the reference, the extra peak memory of reference and cpp (``extra_info.peak_extra_mib``) and
cpp's GFLOP/s; then the sgemm ceiling measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from pathlib import Path


def _time(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.2f} s" if seconds >= 1 else f"{seconds * 1e3:.3g} ms"


def _ratio(num: float | None, den: float | None) -> str:
    return "-" if num is None or den is None else f"{num / den:.2f}x"


def _mib(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.1f}"


def format_table(run: dict) -> str:
    rows: dict[tuple, dict[str, dict]] = defaultdict(dict)
    ceilings = []
    for bench in run["benchmarks"]:
        info, stats = bench["extra_info"], bench["stats"]
        if bench["name"].startswith("test_sgemm_ceiling"):
            ceilings.append((bench["name"], info.get("gflops")))
            continue
        if not bench["name"].startswith("test_bamco_loss_cpu"):
            continue
        key = (info["B"], info["C"], info["mode"])
        rows[key][info["provider"]] = {"min": stats["min"], **info}
    lines = [
        "| B | C | mode | official | reference | cpp | cpp vs official | cpp vs reference "
        "| peak MiB ref -> cpp | cpp GFLOP/s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    for (batch, classes, mode), by in sorted(
        rows.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2] != "fwd")
    ):

        def get(provider, field, by=by):
            return by.get(provider, {}).get(field)

        lines.append(
            f"| {batch} | {classes} | {'fwd+bwd' if mode == 'full' else 'fwd'} "
            f"| {_time(get('official', 'min'))} | {_time(get('reference', 'min'))} | {_time(get('cpp', 'min'))} "
            f"| {_ratio(get('official', 'min'), get('cpp', 'min'))} "
            f"| {_ratio(get('reference', 'min'), get('cpp', 'min'))} "
            f"| {_mib(get('reference', 'peak_extra_mib'))} -> {_mib(get('cpp', 'peak_extra_mib'))} "
            f"| {get('cpp', 'gflops') or 0:.0f} |"
        )
    if ceilings:
        lines.append("")
        lines.append(
            "sgemm ceiling in the same run: "
            + ", ".join(f"{name.split('[')[-1].rstrip(']')}^3 {g:.0f} GFLOP/s" for name, g in ceilings)
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path, help="pytest-benchmark JSON of bench_bamco_loss.py")
    args = parser.parse_args(argv)
    print(format_table(json.loads(args.results.read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
