"""``matching.html`` of a pretraining run: the matching evaluation as a page (:mod:`bamco_fast.matching_html`).

The columns use the embeddings the matching table uses (:func:`~bamco_fast.train.pretrain.prepare.evaluator`):
the image embedding is the L2-normalised frozen image-tower output of each validation image for every
column; the strings are embedded by the text tower alone (column "untrained": no trained head) or by
the text tower and a trained model's text head (the alignment baseline when the run has one, BaMCo).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = ["write_matching_page"]


@torch.no_grad()
def write_matching_page(
    prep,
    run_dir: Path | str,
    results: Mapping[str, Mapping[str, float]] | None = None,
    models: Mapping[str, torch.nn.Module] | None = None,
) -> Path:
    """Write ``run_dir/matching.html`` for the validation records of ``prep`` (a pretraining ``Prepared``).

    Args:
        prep: what :func:`~bamco_fast.train.pretrain.prepare.prepare` built (validation table, frozen features).
        run_dir: the run folder.
        results: the run's matching table (model name -> scores), shown at the top.
        models: trained knowledge spaces by column name (``"alignment"``, ``"BaMCo"``); a column not given
            is loaded from ``run_dir/alignment/knowledge_space`` or ``run_dir/knowledge_space`` when present.
    """
    from bamco_fast.matching_html import MatchingPageOptions, write_matching_html
    from bamco_fast.models.knowledge_space import KnowledgeSpace

    from .data import frozen_text_features

    run_dir = Path(run_dir)
    models = dict(models or {})
    for name, folder in (("alignment", run_dir / "alignment"), ("BaMCo", run_dir)):
        if name not in models and (folder / "knowledge_space").is_dir():
            models[name] = KnowledgeSpace.load(folder / "knowledge_space", device=prep.runtime.device).eval()
    image = F.normalize(prep.val_image_features.float(), dim=-1)
    columns = {"untrained": (image, F.normalize(prep.val_text_features.float(), dim=-1))}
    for name in ("alignment", "BaMCo"):
        if name in models:
            model = models[name]
            features = prep.val_text_features
            if not model.config.freeze_text_tower:  # a trained text tower: encode the strings again
                features = frozen_text_features(model, prep.tables.val.strings)
            columns[name] = (image, F.normalize(model.text_head(features).float(), dim=-1))
    config = prep.config
    return write_matching_html(
        run_dir / "matching.html",
        prep.tables.val,
        columns,
        results=results,
        title=f"Matching: {config.data.dataset} knowledge space ({run_dir})",
        description=f"validation records: {prep.tables.val_source}",
        options=MatchingPageOptions(seed=config.loop.seed),
    )
