"""A local web page to ask a trained VQA run questions: ``python -m bamco_fast.serve --run RUN``.

Gradio (the optional extra ``serve``: ``pip install "bamco_fast[serve]"``) is imported only when the page
is built, so importing this package stays light. See :mod:`.cli` for the options, :mod:`.answers` for
what the page does and :mod:`.app` for the page.
"""

from .cli import ServeOptions, main

__all__ = ["ServeOptions", "main"]
