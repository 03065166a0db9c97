"""The pretraining stage (``python -m bamco_fast.train pretrain``): config and presets, data, task, preparation."""

from .stage import STAGE

__all__ = ["STAGE"]
