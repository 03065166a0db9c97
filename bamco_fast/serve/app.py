"""The Gradio page of ``python -m bamco_fast.serve`` (Gradio is imported only when the page is built).

Left: upload an image (any file: it is checked by :func:`~bamco_fast.serve.answers.check_image`, so a file
that is not an image, or is too large, gets a message in the page) or pick one of the run's evaluation
images; a preview. Right: the question, the answer, and its details (retrieved entity with its
intra-class images, knowledge text, time taken). Below: several questions about the same image, one per
line, answered in one batch. API endpoints: ``/answer`` (upload, example, question) -> (answer, details
HTML, message) and ``/answer_batch`` (upload, example, questions) -> (table, message).
"""

from __future__ import annotations

import html
import inspect
from pathlib import Path

from .answers import Answerer, UploadError, check_image

__all__ = ["build_app", "launch"]

MAX_BATCH = 64  # questions per batch request


def _message(text: str) -> str:
    return f"**Cannot answer:** {text}" if text else ""


def _preview(path: Path, size: int = 512):
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
        image.thumbnail((size, size))
        return image


def _theme(gr):
    """The default theme with the system's fonts (the page loads nothing from the network)."""
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["monospace"])


def build_app(answerer: Answerer, examples: list[tuple[str, Path, str]], *, title: str):
    """A ``gradio.Blocks`` page for ``answerer``; ``examples`` are ``(label, image, question)``."""
    import gradio as gr

    by_label = {label: (path, question) for label, path, question in examples}

    def image_of(upload, example):
        if upload:
            return upload
        return by_label[example][0] if example in by_label else None

    def show(upload, example):
        try:
            return _preview(check_image(image_of(upload, example), answerer.limits)), ""
        except UploadError as exc:
            return None, _message(str(exc)) if upload or example else ""

    def pick(example):
        path, question = by_label.get(example, (None, ""))
        return None, (_preview(path) if path else None), question, ""

    def answer_one(upload, example, question):
        try:
            answers, seconds = answerer.answer(image_of(upload, example), [question or ""])
        except UploadError as exc:
            return "", "", _message(str(exc))
        return answers[0].text, answerer.details_html(question, answers[0], seconds), ""

    def answer_many(upload, example, text):
        questions = [line.strip() for line in (text or "").splitlines() if line.strip()]
        if len(questions) > MAX_BATCH:
            return [], _message(f"{len(questions)} questions; at most {MAX_BATCH} are answered at once.")
        try:
            answers, seconds = answerer.answer(image_of(upload, example), questions)
        except UploadError as exc:
            return [], _message(str(exc))
        rows = [[q, a.text, a.retrieved_entity or ""] for q, a in zip(questions, answers)]
        return rows, f"{len(rows)} questions answered in one batch in {seconds:.2f} s."

    options = {"title": title, "analytics_enabled": False}
    if "theme" in inspect.signature(gr.Blocks.__init__).parameters:  # Gradio 5 takes the theme here
        options["theme"] = _theme(gr)
    with gr.Blocks(**options) as app:
        gr.Markdown(f"## {html.escape(title)}")
        with gr.Row():
            with gr.Column(scale=2):
                upload = gr.File(label="Upload an image", type="filepath")
                example = gr.Dropdown(choices=list(by_label), value=None, label="or pick an evaluation image")
                preview = gr.Image(label="Image", type="pil", interactive=False, height=300)
            with gr.Column(scale=3):
                question = gr.Textbox(label="Question", placeholder="e.g. Which organ is abnormal?")
                ask = gr.Button("Answer", variant="primary")
                message = gr.Markdown()
                answer = gr.Textbox(label="Answer", interactive=False)
                details = gr.HTML()
        gr.Markdown("### Several questions about the same image (one per line, answered in one batch)")
        batch = gr.Textbox(label="Questions", lines=4)
        ask_all = gr.Button("Answer all")
        batch_message = gr.Markdown()
        table = gr.Dataframe(headers=["question", "answer", "retrieved entity"], interactive=False)
        upload.change(show, [upload, example], [preview, message], api_name=False)
        example.change(pick, [example], [upload, preview, question, message], api_name=False)
        ask.click(answer_one, [upload, example, question], [answer, details, message], api_name="answer")
        question.submit(answer_one, [upload, example, question], [answer, details, message], api_name=False)
        ask_all.click(answer_many, [upload, example, batch], [table, batch_message], api_name="answer_batch")
    return app


def launch(app, *, host: str, port: int, max_bytes: int) -> None:
    """Serve ``app`` on ``host:port`` until interrupted (uploads above ``max_bytes`` are refused)."""
    import gradio as gr

    kwargs = {
        "server_name": host,
        "server_port": port,
        "max_file_size": max_bytes,
        "share": False,
        "inbrowser": False,
        "show_error": False,
    }
    params = inspect.signature(app.launch).parameters
    if "ssr_mode" in params:
        kwargs["ssr_mode"] = False
    if "theme" in params:  # Gradio 6 takes the theme at launch
        kwargs["theme"] = _theme(gr)
    app.queue(default_concurrency_limit=1).launch(**kwargs)
