"""The VQA stage (``python -m bamco_fast.train vqa``): config and presets, data, task, preparation, evaluation."""

from .stage import STAGE

__all__ = ["STAGE"]
