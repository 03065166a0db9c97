"""Command line for answer scoring and inspection: ``python -m bamco_fast.evaluate score|baselines|table|report``
(see :mod:`.cli`); the HTML page of a run's answers: :func:`write_report_html` (:mod:`.html_report`)."""

from .cli import main
from .html_report import ReportPageOptions, build_report_html, write_report_html

__all__ = ["ReportPageOptions", "build_report_html", "main", "write_report_html"]
