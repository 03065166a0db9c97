"""Predictions files: one JSON object per line (JSONL), read with errors that name the line.

Fields (only ``qid`` and ``prediction`` are required; other names can be mapped with ``qid_field=`` and
``prediction_field=``, e.g. LLaVA's ``question_id`` / ``text``):

===============  ===================================================================================
field            meaning
===============  ===================================================================================
``qid``          question id (string or integer; compared as a string), unique in the file
``prediction``   the model's answer text (a string; ``""`` is allowed and scored)
``answer``       ground-truth answer (optional: joined from the dataset by ``qid`` when absent)
``answer_type``  ``"OPEN"`` or ``"CLOSED"`` (optional, case-insensitive; joined from the dataset)
``question``     question text (optional)
anything else    kept in :attr:`Prediction.extra` (``retrieved_entity``, ``image_name``, ...)
===============  ===================================================================================
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.errors import DataFormatError, MissingFileError
from ..data.jsonio import atomic_write_text

__all__ = ["Prediction", "PredictionsError", "read_predictions", "write_predictions"]

_KNOWN = ("qid", "prediction", "answer", "answer_type", "question")


class PredictionsError(DataFormatError):
    """A predictions file (or list) is not in the expected format; the message names the line."""


@dataclass(frozen=True)
class Prediction:
    """One scored question: the model's ``prediction`` for question ``qid``.

    ``line`` is the 1-based line of the file it was read from (``None`` when built in code); it is not
    written back and does not take part in comparisons.
    """

    qid: str
    prediction: str
    answer: str | None = None
    answer_type: str | None = None
    question: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    line: int | None = field(default=None, compare=False, hash=False)

    def to_json(self) -> dict[str, Any]:
        """The JSONL object of this prediction (optional fields only when set)."""
        out: dict[str, Any] = {"qid": self.qid, "prediction": self.prediction}
        for name in ("answer", "answer_type", "question"):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        out.update({k: v for k, v in self.extra.items() if k not in out})
        return out


def _answer_type(value: Any, path: Path, line: int) -> str | None:
    if value is None:
        return None
    text = value.strip().upper() if isinstance(value, str) else None
    if text not in ("OPEN", "CLOSED"):
        raise PredictionsError(
            f"field 'answer_type' must be 'OPEN' or 'CLOSED', got {value!r}", path=path, line=line
        )
    return text


def _optional_text(item: dict, name: str, path: Path, line: int) -> str | None:
    value = item.get(name)
    if value is None or isinstance(value, str):
        return value
    if name == "answer" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # numeric answers ("3") written as JSON numbers
    raise PredictionsError(
        f"field {name!r} must be a string, got {type(value).__name__} {value!r}", path=path, line=line
    )


def _parse_line(raw: bytes, number: int, path: Path, qid_field: str, prediction_field: str) -> Prediction:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PredictionsError(
            f"not UTF-8 text ({exc.reason} at byte {exc.start} of the line); predictions files must be UTF-8",
            path=path,
            line=number,
        ) from None
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        raise PredictionsError(
            f"malformed JSON (column {exc.colno}: {exc.msg})", path=path, line=number
        ) from None
    if not isinstance(item, dict):
        raise PredictionsError(f"expected a JSON object, got {type(item).__name__}", path=path, line=number)
    missing = [name for name in (qid_field, prediction_field) if name not in item]
    if missing:
        raise PredictionsError(
            f"missing field(s) {missing}; expected at least {[qid_field, prediction_field]}, got {sorted(item)}",
            path=path,
            line=number,
        )
    qid, prediction = item[qid_field], item[prediction_field]
    if isinstance(qid, bool) or not isinstance(qid, (str, int)) or (isinstance(qid, str) and not qid.strip()):
        raise PredictionsError(
            f"field {qid_field!r} must be a non-empty string or an integer, got {qid!r}",
            path=path,
            line=number,
        )
    if not isinstance(prediction, str):
        raise PredictionsError(
            f"field {prediction_field!r} must be a string, got {type(prediction).__name__} {prediction!r}",
            path=path,
            line=number,
        )
    renamed = {qid_field: "qid", prediction_field: "prediction"}
    rest = {k: v for k, v in item.items() if k not in renamed}
    extra = {k: v for k, v in rest.items() if k not in _KNOWN}
    return Prediction(
        qid=str(qid).strip(),
        prediction=prediction,
        answer=_optional_text(rest, "answer", path, number),
        answer_type=_answer_type(rest.get("answer_type"), path, number),
        question=_optional_text(rest, "question", path, number),
        extra=extra,
        line=number,
    )


def read_predictions(
    path: str | Path, *, qid_field: str = "qid", prediction_field: str = "prediction"
) -> list[Prediction]:
    """Read a predictions JSONL file (blank lines are skipped).

    Raises:
        MissingFileError: ``path`` is not a file.
        PredictionsError: a line is not UTF-8, not a JSON object, lacks ``qid``/``prediction``, has a field
            of the wrong type, repeats an earlier ``qid`` (both lines named), or the file holds no prediction.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError("predictions file not found (expected a JSONL file here)", path=path)
    rows: list[Prediction] = []
    first_line: dict[str, int] = {}
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            row = _parse_line(raw, number, path, qid_field, prediction_field)
            if row.qid in first_line:
                raise PredictionsError(
                    f"duplicate qid {row.qid!r} (first on line {first_line[row.qid]}); each question must be "
                    "predicted once",
                    path=path,
                    line=number,
                )
            first_line[row.qid] = number
            rows.append(row)
    if not rows:
        raise PredictionsError(
            "empty predictions file: expected one JSON object per line with 'qid' and 'prediction'", path=path
        )
    return rows


def write_predictions(path: str | Path, rows: Sequence[Prediction]) -> Path:
    """Write ``rows`` as UTF-8 JSONL atomically (temporary file + rename; a new file gets ``0o666`` minus the
    umask, an existing one keeps its mode); returns ``path``."""
    lines = [json.dumps(row.to_json(), ensure_ascii=False) for row in rows]
    path = Path(path)
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return path
