"""bamco_fast: fused balanced multimodal contrastive learning for knowledge-driven medical VQA.

The import surface never needs Triton or the compiled extension: both are loaded lazily by the ops that
use them, and ``python -m bamco_fast.info`` reports what is available and why not.
"""

from __future__ import annotations

from . import functional
from .encoders import IntraClassEncoder
from .losses import BaMCoLoss, BaMCoObjective, LogitAdjustedCrossEntropy, NormedLinear
from .ops import BackendUnavailableError

__version__ = "0.1.0"

__all__ = [
    "BaMCoLoss",
    "BaMCoObjective",
    "BackendUnavailableError",
    "IntraClassEncoder",
    "LogitAdjustedCrossEntropy",
    "NormedLinear",
    "__version__",
    "functional",
]
