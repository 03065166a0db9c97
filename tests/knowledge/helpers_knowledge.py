"""Synthetic UMLS release files in the real RRF column layout, and a tiny PathVQA-layout dataset."""

from __future__ import annotations

import json
from pathlib import Path


def conso(cui, sab, tty, text, *, lat="ENG", ts="P", stt="PF", ispref="Y", suppress="N", aui="A0"):
    # CUI|LAT|TS|LUI|STT|SUI|ISPREF|AUI|SAUI|SCUI|SDUI|SAB|TTY|CODE|STR|SRL|SUPPRESS|CVF|
    return (
        "|".join(
            [
                cui,
                lat,
                ts,
                "L0",
                stt,
                "S0",
                ispref,
                aui,
                "",
                "123",
                "",
                sab,
                tty,
                "123",
                text,
                "0",
                suppress,
                "",
            ]
        )
        + "|"
    )


def mrdef(cui, sab, text):
    # CUI|AUI|ATUI|SATUI|SAB|DEF|SUPPRESS|CVF|
    return "|".join([cui, "A0", "AT0", "", sab, text, "N", ""]) + "|"


def rel(cui1, rela, cui2, sab="SNOMEDCT_US", rel_code="RO"):
    # CUI1|AUI1|STYPE1|REL|CUI2|AUI2|STYPE2|RELA|RUI|SRUI|SAB|SL|RG|DIR|SUPPRESS|CVF|
    return (
        "|".join(
            [cui1, "A1", "SCUI", rel_code, cui2, "A2", "SCUI", rela, "R0", "", sab, sab, "0", "", "N", ""]
        )
        + "|"
    )


def write_umls(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    lines = [
        conso("C0024109", "SNOMEDCT_US", "PT", "Lung structure", ts="S", stt="VO", ispref="N"),
        conso("C0024109", "SNOMEDCT_US", "SY", "Lung", ts="S", stt="VO", ispref="N"),
        conso("C0024109", "MTH", "PN", "Lung"),  # the UMLS preferred name
        conso("C0032326", "SNOMEDCT_US", "PT", "Pneumothorax"),
        conso("C0018787", "SNOMEDCT_US", "PT", "Heart"),
        conso(
            "C0018787", "SNOMEDCT_US", "SY", "Cardiac structure", suppress="O"
        ),  # suppressed: never matched
        conso("C0006826", "MSH", "MH", "Cancer"),  # not in SNOMEDCT_US: never matched
        conso("C0009999", "SNOMEDCT_US", "PT", "Lung", lat="FRE"),
        conso("C0225730", "SNOMEDCT_US", "PT", "Left lung"),
    ]
    (folder / "MRCONSO.RRF").write_text("\n".join(lines) + "\n", encoding="utf-8")
    defs = [
        mrdef("C0024109", "CSP", "csp definition of lung"),
        mrdef("C0024109", "MSH", "Either of the pair of organs occupying the cavity of the thorax."),
        mrdef("C0024109", "NCI", "One of a pair of organs in the chest."),
        mrdef("C0032326", "MSH", "An accumulation of air or gas in the pleural space."),
        mrdef("C0225730", "CSP", "left lung, not NCI or MSH"),
    ]
    (folder / "MRDEF.RRF").write_text("\n".join(defs) + "\n", encoding="utf-8")
    rels = [
        rel("C0024109", "finding_site_of", "C0032326"),
        rel("C0024109", "isa", "C0225730", rel_code="CHD"),
        rel("C0024109", "inverse_isa", "C0018787", rel_code="PAR"),
        rel("C0024109", "mapped_to", "C0018787"),
        rel("C0024109", "", "C0018787"),
        rel("C0024109", "has_part", "C0018787", sab="MSH"),  # other vocabulary: ignored
        rel("C0032326", "has_finding_site", "C0024109"),
    ]
    (folder / "MRREL.RRF").write_text("\n".join(rels) + "\n", encoding="utf-8")
    (folder / "MRSTY.RRF").write_text(
        "C0024109|T023|A1.2.3.1|Body Part, Organ, or Organ Component|AT1||\n", encoding="utf-8"
    )
    return folder


def write_pathvqa_json(root: Path, rows: list[dict]) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    for row in rows:
        (root / "images" / row["image"]).write_bytes(b"\xff\xd8\xff fake jpeg")
    (root / "train.json").write_text(json.dumps(rows), encoding="utf-8")
    return root


def build_argv(root: Path, kb: str, out: Path, *extra: str, dataset: str = "slake") -> list[str]:
    """``python -m bamco_fast.knowledge build`` arguments for one dataset folder and knowledge base."""
    return ["build", "--dataset", dataset, "--root", str(root), "--kb", kb, "--out", str(out), *extra]
