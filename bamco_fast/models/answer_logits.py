"""The VQA loss with the LM head applied only where the loss needs it: at the answer positions, in chunks.

A causal LM's usual training forward projects every position onto the vocabulary: ``B x L x V`` logits
(with Llama 3's ``V = 128,256``, batch 32 and 256 positions that is 1.05 G floats, 4.2 GB in fp32, and as
much again for their gradient), although the VQA loss covers only the answer tokens and their eos,
a few per question. Here the backbone's final hidden states ``h`` ``(B, L, H)`` are gathered at the
``N`` positions whose *next* token is a label,

    ``rows = {(b, t) : labels[b, t + 1] != -100}``,  ``x = h[rows]`` ``(N, H)``,  ``y = labels[b, t + 1]``,

and the loss is the mean token cross-entropy of ``x W^T + b`` against ``y``:

    ``loss = (1 / N) sum_n [ logsumexp_v (x_n . W_v + b_v) - (x_n . W_{y_n} + b_{y_n}) ]``,

computed over row chunks of at most ``chunk_rows`` rows, each chunk under activation checkpointing, so
at most one ``chunk_rows x V`` block of logits exists at a time, in the forward and the backward pass
(which recomputes it). No ``B x L x V`` tensor is ever formed. Logits are upcast to float32 for the
log-sum-exp, as the full-logits loss of Hugging Face causal LMs does; the value and the gradients equal
the full-logits path (``labels=`` to the LM) up to float rounding.

Supported: every Hugging Face causal LM whose logits are the output embedding applied to the last hidden
state (Llama, GPT-2 and most others). Models that rescale or cap their logits (``logit_scale``,
``logits_scaling``, ``final_logit_softcapping``, ``output_multiplier_scale``) are reported by
:func:`answer_only_unsupported_reason` and keep the full-logits path.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

__all__ = [
    "answer_hidden_states",
    "answer_only_unsupported_reason",
    "causal_lm_parts",
    "default_chunk_rows",
    "linear_cross_entropy",
    "linear_cross_entropy_reference",
    "upcast_logits",
]

#: Config attributes that change logits beyond ``head(hidden)``; a non-trivial value disables the
#: answer-only path.
_LOGIT_TRANSFORMS = ("logit_scale", "logits_scaling", "final_logit_softcapping", "output_multiplier_scale")

#: Floats of one chunk of logits (64 MB in float32).
_CHUNK_FLOATS = 1 << 24


def default_chunk_rows(vocab_size: int) -> int:
    """Rows per chunk so that one chunk of logits holds at most 2**24 floats (>= 1 row)."""
    return max(1, _CHUNK_FLOATS // max(1, int(vocab_size)))


def causal_lm_parts(llm: nn.Module) -> tuple[nn.Module, nn.Module]:
    """``(backbone, head)`` of a Hugging Face causal LM, peft-wrapped or not.

    ``backbone(inputs_embeds=..., attention_mask=..., position_ids=...)`` returns the final hidden states
    (final norm included) as ``last_hidden_state``; ``head`` is the output embedding (``nn.Linear``).
    """
    from .lora import is_peft_model

    model = llm.get_base_model() if is_peft_model(llm) else llm
    backbone = getattr(model, getattr(model, "base_model_prefix", ""), None)
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if backbone is None or backbone is model or head is None:
        raise ValueError(
            f"llm: expected a Hugging Face causal LM with a backbone and an output embedding, got "
            f"{type(model).__name__}"
        )
    return backbone, head


def answer_only_unsupported_reason(llm: nn.Module) -> str | None:
    """Why the answer-only loss cannot reproduce ``llm``'s logits (``None`` when it can)."""
    from .lora import is_peft_model

    model = llm.get_base_model() if is_peft_model(llm) else llm
    config = getattr(model, "config", None)
    for name in _LOGIT_TRANSFORMS:
        value = getattr(config, name, None)
        if value not in (None, 1, 1.0, 0, 0.0, False):
            return f"{type(model).__name__} transforms its logits ({name}={value})"
    try:
        _, head = causal_lm_parts(llm)
    except ValueError as exc:
        return str(exc)
    if not isinstance(head, nn.Linear):
        return f"the output embedding is a {type(head).__name__}, not nn.Linear"
    return None


def answer_hidden_states(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rows of ``hidden`` ``(B, L, H)`` that predict a label of ``labels`` ``(B, L)`` (``-100`` = none).

    Returns ``(x, y)``: ``x`` ``(N, H)`` the hidden states at positions ``t`` with ``labels[:, t + 1] !=
    -100`` (row-major order), ``y`` ``(N,)`` int64 those labels.
    """
    if hidden.dim() != 3 or labels.shape != hidden.shape[:2]:
        raise ValueError(
            f"labels: expected shape {tuple(hidden.shape[:2])} (the hidden states' first two dims), "
            f"got {tuple(labels.shape)}"
        )
    target = labels[:, 1:]
    keep = target != -100
    return hidden[:, :-1][keep], target[keep]


def linear_cross_entropy_reference(
    x: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean cross-entropy of the full logits ``x W^T + b`` ``(N, V)`` against ``targets`` (log-sum-exp in
    float32, or float64 for float64 inputs)."""
    return F.cross_entropy(upcast_logits(F.linear(x, weight, bias)), targets)


def upcast_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits in float32 for the log-sum-exp (float64 stays float64)."""
    return logits if logits.dtype == torch.float64 else logits.float()


def _chunk_loss_sum(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor
) -> torch.Tensor:
    return F.cross_entropy(upcast_logits(F.linear(x, weight, bias)), targets, reduction="sum")


def linear_cross_entropy(
    x: torch.Tensor,
    weight: torch.Tensor,
    targets: torch.Tensor,
    bias: torch.Tensor | None = None,
    *,
    chunk_rows: int | None = None,
) -> torch.Tensor:
    """Mean cross-entropy of ``x W^T + b`` against ``targets`` without materialising the ``(N, V)`` logits.

    Args:
        x: ``(N, H)`` hidden states (any float dtype; the matmul runs in it, the log-sum-exp in float32,
            or float64 for float64 inputs).
        weight: ``(V, H)`` output embedding; ``bias``: ``(V,)`` or ``None``.
        targets: ``(N,)`` int64 token ids in ``[0, V)``.
        chunk_rows: rows per chunk (default :func:`default_chunk_rows`); each chunk runs under
            activation checkpointing, so peak memory holds one ``chunk_rows x V`` block.

    Returns:
        0-dim float32 (float64 for float64 inputs) tensor; differentiable w.r.t. ``x``, ``weight``, ``bias``.
    """
    if x.dim() != 2 or weight.dim() != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(
            f"x, weight: expected (N, H) and (V, H), got {tuple(x.shape)} and {tuple(weight.shape)}"
        )
    if targets.shape != (x.shape[0],):
        raise ValueError(f"targets: expected shape ({x.shape[0]},), got {tuple(targets.shape)}")
    n = x.shape[0]
    if n == 0:
        raise ValueError("targets: expected at least one answer token, got none")
    rows = int(chunk_rows) if chunk_rows else default_chunk_rows(weight.shape[0])
    if rows < 1:
        raise ValueError(f"chunk_rows: expected an integer >= 1, got {chunk_rows}")
    needs = (x.requires_grad, weight.requires_grad, bias is not None and bias.requires_grad)
    grad = torch.is_grad_enabled() and any(needs)
    total = None
    for start in range(0, n, rows):
        part = (x[start : start + rows], weight, bias, targets[start : start + rows])
        if grad:
            piece = checkpoint(_chunk_loss_sum, *part, use_reentrant=False)
        else:
            piece = _chunk_loss_sum(*part)
        total = piece if total is None else total + piece
    return total / n
