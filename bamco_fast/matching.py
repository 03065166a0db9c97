"""Zero-shot matching evaluation of a knowledge space (paper Fig. 4): image -> text and text -> text.

Every evaluation record has a reference image, an intra-class stack and three texts: its entity name,
its definition and its ``"<relation> <tail>"`` string. With L2-normalised embeddings, a query ranks
candidate strings by cosine similarity; a query is correct at top-k when one of the k best candidate
*strings* equals its own (duplicates of a string count as that string, as in the published code).

Tasks (query -> candidate kind): ``image->entity``, ``image->definition``, ``image->relation`` (query
f1), ``intra->entity``, ``intra->definition``, ``intra->relation`` (query f2, when given),
``relation->entity``, ``relation->definition``, ``entity->definition`` (text queries f3).

Protocols:

* ``"full"`` (default): the candidates are all distinct strings of that kind among the evaluation
  records, so the score does not depend on batch composition or order.
* ``"in-batch"``: the published protocol: records are cut into consecutive batches of ``batch_size``
  (table order) and each query ranks only the strings of its own batch (duplicates included).

Scores are fractions in [0, 1]; :func:`matching_scores` returns ``{"<task>/top1": ..., "<task>/top5": ...}``
plus ``"mean"`` (the mean of all of them, the published model-selection number) and ``"mean/no-intra"``
(the mean without the intra-class tasks, comparable with the untrained towers, which have no intra branch).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

__all__ = [
    "IMAGE_TASKS",
    "INTRA_TASKS",
    "KINDS",
    "PROTOCOLS",
    "TEXT_TASKS",
    "MatchingInputs",
    "format_matching_table",
    "match_accuracy",
    "matching_scores",
]

KINDS: tuple[str, ...] = ("entity", "definition", "relation")  # columns of text_index
PROTOCOLS: tuple[str, ...] = ("full", "in-batch")
IMAGE_TASKS: tuple[tuple[str, str], ...] = (
    ("image", "entity"),
    ("image", "definition"),
    ("image", "relation"),
)
INTRA_TASKS: tuple[tuple[str, str], ...] = (
    ("intra", "entity"),
    ("intra", "definition"),
    ("intra", "relation"),
)
TEXT_TASKS: tuple[tuple[str, str], ...] = (
    ("relation", "entity"),
    ("relation", "definition"),
    ("entity", "definition"),
)


@dataclass
class MatchingInputs:
    """Embeddings of ``N`` evaluation records over a table of ``T`` distinct strings.

    Attributes:
        image: (N, D) L2-normalised image embeddings (f1) of each record's reference image.
        strings: (T, D) L2-normalised text embeddings (f3) of every distinct string.
        text_index: (N, 3) int64 indices into ``strings``: (entity, definition, relation) of each record.
        intra: optional (N, D) L2-normalised intra-class embeddings (f2).
    """

    image: torch.Tensor
    strings: torch.Tensor
    text_index: torch.Tensor
    intra: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = self.text_index.shape[0] if self.text_index.dim() == 2 else -1
        if self.text_index.dim() != 2 or self.text_index.shape[1] != 3:
            raise ValueError(f"MatchingInputs: text_index must be (N, 3), got {tuple(self.text_index.shape)}")
        for name in ("image", "intra"):
            value = getattr(self, name)
            if value is not None and (value.dim() != 2 or value.shape[0] != n):
                raise ValueError(f"MatchingInputs: {name} must be (N={n}, D), got {tuple(value.shape)}")
        if self.strings.dim() != 2 or self.strings.shape[1] != self.image.shape[1]:
            raise ValueError(
                f"MatchingInputs: strings must be (T, D={self.image.shape[1]}), got {tuple(self.strings.shape)}"
            )
        if n and (int(self.text_index.min()) < 0 or int(self.text_index.max()) >= self.strings.shape[0]):
            raise ValueError(f"MatchingInputs: text_index entries must be in [0, {self.strings.shape[0]})")


def match_accuracy(
    queries: torch.Tensor,
    targets: torch.Tensor,
    string_embeddings: torch.Tensor,
    *,
    ks: Sequence[int] = (1, 5),
    protocol: str = "full",
    batch_size: int = 48,
) -> dict[int, float]:
    """Top-k accuracy of ``queries`` retrieving their ``targets`` among candidate strings.

    Args:
        queries: (N, D) float, L2-normalised.
        targets: (N,) int64 string id of each query's correct text.
        string_embeddings: (T, D) float, L2-normalised embedding of every string id.
        ks: the k of each top-k.
        protocol: ``"full"`` (candidates = the distinct ``targets``) or ``"in-batch"`` (consecutive
            chunks of ``batch_size``; candidates = the chunk's targets, duplicates included).
        batch_size: chunk size of ``"in-batch"``.

    Returns:
        {k: fraction of queries whose k best candidate strings contain the target}. ``k`` larger than the
        candidate count counts every candidate.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"match_accuracy: protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if queries.dim() != 2 or targets.dim() != 1 or queries.shape[0] != targets.shape[0]:
        raise ValueError(
            f"match_accuracy: queries must be (N, D) and targets (N,), got {tuple(queries.shape)}, "
            f"{tuple(targets.shape)}"
        )
    n = queries.shape[0]
    if n == 0:
        raise ValueError("match_accuracy: no queries")
    queries = queries.float()
    string_embeddings = string_embeddings.float()
    hits = {k: 0 for k in ks}
    if protocol == "full":
        chunks = [(torch.arange(n), torch.unique(targets))]
    else:
        if batch_size < 1:
            raise ValueError(f"match_accuracy: batch_size must be >= 1, got {batch_size}")
        chunks = [(rows, targets[rows]) for rows in torch.arange(n).split(batch_size)]
    for rows, candidates in chunks:
        scores = queries[rows] @ string_embeddings[candidates].T  # (n_rows, n_candidates)
        order = scores.argsort(dim=1, descending=True, stable=True)
        ranked = candidates[order]  # string id at each rank
        correct = ranked == targets[rows][:, None]
        for k in ks:
            hits[k] += int(correct[:, :k].any(dim=1).sum())
    return {k: hits[k] / n for k in ks}


def matching_scores(
    inputs: MatchingInputs,
    *,
    protocol: str = "full",
    batch_size: int = 48,
    ks: Sequence[int] = (1, 5),
    tasks: Sequence[tuple[str, str]] | None = None,
) -> dict[str, float]:
    """Every matching task's top-k accuracies and their ``mean``.

    Args:
        inputs: embeddings (see :class:`MatchingInputs`).
        protocol, batch_size, ks: see :func:`match_accuracy`.
        tasks: (query, kind) pairs; default: the image tasks, the intra tasks when ``inputs.intra`` is
            given, and the text tasks.

    Returns:
        ``{"image->entity/top1": 0.42, ..., "mean": ..., "mean/no-intra": ...}``.
    """
    if tasks is None:
        tasks = (*IMAGE_TASKS, *(INTRA_TASKS if inputs.intra is not None else ()), *TEXT_TASKS)
    out: dict[str, float] = {}
    for query, kind in tasks:
        targets = inputs.text_index[:, KINDS.index(kind)]
        if query in KINDS:
            q = inputs.strings[inputs.text_index[:, KINDS.index(query)]]
        elif query in ("image", "intra"):
            q = getattr(inputs, query)
            if q is None:
                raise ValueError(f"matching_scores: task {query}->{kind} needs inputs.{query}")
        else:
            raise ValueError(
                f"matching_scores: unknown query {query!r}; expected image, intra or one of {KINDS}"
            )
        accuracy = match_accuracy(q, targets, inputs.strings, ks=ks, protocol=protocol, batch_size=batch_size)
        for k, value in accuracy.items():
            out[f"{query}->{kind}/top{k}"] = value
    values = dict(out)
    out["mean"] = sum(values.values()) / len(values)
    shared = [v for k, v in values.items() if not k.startswith("intra->")]
    out["mean/no-intra"] = sum(shared) / len(shared)  # comparable with towers that have no intra branch
    return out


def format_matching_table(results: Mapping[str, Mapping[str, float]], *, percent: bool = True) -> str:
    """A plain-text table: one row per task/top-k, one column per model (e.g. untrained, alignment, BaMCo).

    Args:
        results: model name -> the dict of :func:`matching_scores`. Missing entries print as ``-``.
    """
    names = list(results)
    keys: list[str] = []
    for scores in results.values():
        keys += [k for k in scores if k not in keys and not k.startswith("mean")]
    keys += ["mean/no-intra", "mean"]
    width = max([len(k) for k in keys] + [4])
    cols = [max(len(n), 7) for n in names]
    lines = [f"{'task':<{width}}  " + "  ".join(f"{n:>{c}}" for n, c in zip(names, cols))]
    lines.append("-" * len(lines[0]))
    for key in keys:
        cells = []
        for name, col in zip(names, cols):
            value = results[name].get(key)
            text = "-" if value is None else (f"{100 * value:.1f}" if percent else f"{value:.3f}")
            cells.append(f"{text:>{col}}")
        lines.append(f"{key:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)
