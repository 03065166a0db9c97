"""Command line for answer scoring: ``python -m bamco_fast.evaluate score|baselines`` (see :mod:`.cli`)."""

from .cli import main

__all__ = ["main"]
