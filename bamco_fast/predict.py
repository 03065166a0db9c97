"""Answer questions about images with a trained VQA run.

One question::

    python -m bamco_fast.predict --run RUN --image scan.jpg --question "Which organ is abnormal?"

prints the answer and the knowledge-space entity retrieved for the image. Many questions::

    python -m bamco_fast.predict --run RUN --batch questions.jsonl [--out answers.jsonl]
    python -m bamco_fast.predict --run RUN --batch IMAGE_FOLDER --questions questions.txt [--out ...]

``questions.jsonl``: one ``{"image": PATH, "question": TEXT}`` object per line (``qid`` optional; a
relative ``image`` is resolved against the file's folder, or against ``IMAGE_FOLDER`` when the
JSONL is given with ``--questions``). ``questions.txt`` with a folder: every question (one per line) is
asked about every image of the folder. Answers are generated in batches (greedy, deterministic) with a
progress bar and written as JSONL (``qid, image, question, prediction, retrieved_entity``, and
``question_entities`` for a run with ``model.knowledge_input=entities``) to ``--out`` or printed.

``RUN`` is the folder written by ``python -m bamco_fast.train vqa``; it refers to its knowledge-space
run, which must still exist (``--knowledge-space`` points elsewhere when it moved).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PredictError", "Question", "build_parser", "main", "read_questions"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".gif", ".webp")


class PredictError(ValueError):
    """Bad input to ``predict``: the message names the argument, what was expected and what was received."""


@dataclass(frozen=True)
class Question:
    qid: str
    image: Path
    question: str


def _check_question(text: object, where: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise PredictError(f"{where}: expected a non-empty question, got {text!r}")
    return text.strip()


def _check_image(path: Path, where: str) -> Path:
    if path.is_dir():
        raise PredictError(f"{where}: expected an image file, got a folder: {path}")
    if not path.is_file():
        raise PredictError(f"{where}: image file not found: {path}")
    return path


def read_questions(batch: Path, questions: Path | None = None) -> list[Question]:
    """The questions of ``--batch`` (and ``--questions``); see the module docstring for the formats."""
    from bamco_fast.data.jsonio import iter_jsonl

    batch = Path(batch)
    out: list[Question] = []
    if batch.is_dir():
        if questions is None:
            raise PredictError(
                f"--batch {batch} is a folder: expected --questions FILE (.txt or .jsonl) with it"
            )
        questions = Path(questions)
        if not questions.is_file():
            raise PredictError(f"--questions: file not found: {questions}")
        if questions.suffix.lower() == ".jsonl":
            return _read_jsonl(questions, base=batch, iter_jsonl=iter_jsonl)
        images = sorted(p for p in batch.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise PredictError(
                f"--batch {batch}: expected image files ({', '.join(IMAGE_SUFFIXES)}), found none"
            )
        texts = [line.strip() for line in questions.read_text(encoding="utf-8").splitlines() if line.strip()]
        if not texts:
            raise PredictError(f"--questions {questions}: expected one question per line, the file has none")
        for image in images:
            for j, text in enumerate(texts):
                out.append(Question(f"{image.name}#{j}", image, text))
        return out
    if not batch.is_file():
        raise PredictError(f"--batch: expected a .jsonl file or an image folder, got {batch} (not found)")
    if questions is not None:
        raise PredictError("--questions goes with a --batch image folder, not with a --batch JSONL file")
    return _read_jsonl(batch, base=batch.parent, iter_jsonl=iter_jsonl)


def _read_jsonl(path: Path, *, base: Path, iter_jsonl) -> list[Question]:
    out: list[Question] = []
    seen: set[str] = set()
    for line, item in iter_jsonl(path, "questions file"):
        where = f"{path} line {line}"
        if not isinstance(item, dict) or "image" not in item or "question" not in item:
            got = sorted(item) if isinstance(item, dict) else type(item).__name__
            raise PredictError(f"{where}: expected an object with 'image' and 'question', got {got}")
        image = Path(str(item["image"]))
        image = image if image.is_absolute() else base / image
        qid = str(item.get("qid", f"{path.stem}-{line}"))
        if qid in seen:
            raise PredictError(f"{where}: duplicate qid {qid!r}")
        seen.add(qid)
        out.append(Question(qid, _check_image(image, where), _check_question(item["question"], where)))
    if not out:
        raise PredictError(f"{path}: expected at least one question, the file is empty")
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bamco_fast.predict",
        description="Answer questions about medical images with a trained BaMCo VQA run.",
    )
    parser.add_argument(
        "--run", required=True, type=Path, help="run folder of `python -m bamco_fast.train vqa`"
    )
    parser.add_argument("--image", type=Path, help="one image file (with --question)")
    parser.add_argument("--question", help="the question about --image")
    parser.add_argument(
        "--batch", type=Path, help="a questions .jsonl file, or an image folder (with --questions)"
    )
    parser.add_argument("--questions", type=Path, help="questions for a --batch folder (.txt or .jsonl)")
    parser.add_argument(
        "--out", type=Path, help="write the answers of --batch here (JSONL) instead of printing"
    )
    parser.add_argument(
        "--knowledge-space", type=Path, help="knowledge-space run, if it moved since training"
    )
    parser.add_argument(
        "--model", type=Path, help="another saved model of the run, e.g. a merged copy (default: RUN/model)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: the run's eval setting")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:N")
    parser.add_argument("--json", action="store_true", help="print the single answer as JSON")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def _questions_from_args(args: argparse.Namespace) -> list[Question]:
    if args.batch is not None:
        if args.image is not None or args.question is not None:
            raise PredictError("use either --image/--question or --batch, not both")
        return read_questions(args.batch, args.questions)
    if args.image is None or args.question is None:
        raise PredictError(
            "expected --image PATH and --question TEXT (or --batch FILE.jsonl / --batch FOLDER)"
        )
    return [Question("0", _check_image(args.image, "--image"), _check_question(args.question, "--question"))]


def _check_args(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise PredictError(f"--batch-size: expected an integer >= 1, got {args.batch_size}")
    if args.max_new_tokens is not None and args.max_new_tokens < 1:
        raise PredictError(f"--max-new-tokens: expected an integer >= 1, got {args.max_new_tokens}")
    if not args.run.is_dir():
        what = "a file" if args.run.exists() else "a path that does not exist"
        raise PredictError(f"--run: expected the folder of a VQA run, got {args.run}, {what}")


def _warn_truncated(model, questions: list[Question]) -> None:
    cut = model.encode_batch([q.question for q in questions])["truncated"]
    if cut:
        shown = ", ".join(questions[i].qid for i in cut[:5]) + (" ..." if len(cut) > 5 else "")
        print(
            f"warning: {len(cut)} question(s) longer than the model's max_length ({model.config.max_length} "
            f"tokens with the prefix) were cut at their end: {shown}",
            file=sys.stderr,
        )


def run(args: argparse.Namespace) -> int:
    _check_args(args)
    questions = _questions_from_args(args)
    if args.out is not None:
        from bamco_fast.data.jsonio import check_output_path

        check_output_path(args.out, "--out")
    from bamco_fast.inference import answer_questions, load_run

    loaded = load_run(
        args.run, knowledge_space=args.knowledge_space, device=args.device, model_dir=args.model
    )
    _warn_truncated(loaded.model, questions)
    answers = answer_questions(
        loaded,
        [(q.image, q.question, q.qid) for q in questions],
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        progress=not args.no_progress and len(questions) > 1,
    )
    rows = [
        {
            "qid": q.qid,
            "image": str(q.image),
            "question": q.question,
            "prediction": a.text,
            "retrieved_entity": a.retrieved_entity,
        }
        for q, a in zip(questions, answers)
    ]
    model = loaded.model
    if model.config.knowledge_input == "entities" and model.entities is not None:
        for row, found in zip(rows, model.entities([q.question for q in questions])):
            row["question_entities"] = found
    if args.batch is None:
        row = rows[0]
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"answer: {row['prediction']}")
            print(f"retrieved entity: {row['retrieved_entity']}")
            if "question_entities" in row:
                print(f"question entities: {row['question_entities'] or '(none: the question text is used)'}")
        return 0
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    if args.out is not None:
        from bamco_fast.data.jsonio import atomic_write_text

        atomic_write_text(args.out, text)
        print(f"{len(rows)} answers written to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m bamco_fast.predict ARGS``; bad input: one line on stderr, status 2 (:mod:`bamco_fast.boundary`)."""
    from bamco_fast.boundary import run_command

    args = build_parser().parse_args(argv)
    return run_command("predict", lambda: run(args))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
