"""How the language model is trained: LoRA adapters through peft, the whole model, or nothing.

``"lora"``   every weight of the LLM frozen; peft LoRA adapters (``target_modules="all-linear"``: Llama's
             q/k/v/o/gate/up/down projections, GPT-2's ``Conv1D`` c_attn/c_proj/c_fc, never the output
             head) trained. Paper values r=64, alpha=16 (scale alpha/r = 0.25), dropout 0.
``"none"``   no adapters: the whole LLM (embeddings included) is trained.
``"frozen"`` no adapters and nothing of the LLM trained (only the projectors learn).
"""

from __future__ import annotations

import copy
from pathlib import Path

from torch import nn

__all__ = ["LORA_MODES", "apply_lora", "is_peft_model", "merged_copy", "save_lora"]

LORA_MODES = ("lora", "none", "frozen")


def _check_mode(mode: str) -> None:
    if mode not in LORA_MODES:
        raise ValueError(f"lora: expected one of {LORA_MODES}, got {mode!r}")


def is_peft_model(llm: nn.Module) -> bool:
    """Whether ``llm`` carries peft adapters."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(llm, PeftModel)


def apply_lora(llm: nn.Module, mode: str, *, r: int = 64, alpha: int = 16, dropout: float = 0.0) -> nn.Module:
    """Prepare ``llm`` for training in ``mode`` (see the module docstring); return the model to use."""
    _check_mode(mode)
    if mode == "none":
        llm.requires_grad_(True)
        return llm
    llm.requires_grad_(False)
    if mode == "frozen":
        return llm
    if r < 1:
        raise ValueError(f"lora_r: expected a positive rank, got {r}")
    import warnings

    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    with warnings.catch_warnings():
        # GPT-2's Conv1D stores weights transposed; peft sets fan_in_fan_out itself and warns.
        warnings.filterwarnings("ignore", message=".*fan_in_fan_out.*")
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*is_gradient_checkpointing.*")
        return get_peft_model(llm, config)


def save_lora(llm: nn.Module, folder: Path) -> None:
    """Write only the adapter weights and their peft config to ``folder``.

    Embedding matrices are never written: rows added for new special tokens are re-created
    deterministically (mean of the old rows) when the base model is prepared again.
    """
    llm.save_pretrained(str(folder), save_embedding_layers=False)


def merged_copy(llm: nn.Module) -> nn.Module:
    """A standalone copy of ``llm`` with its adapters merged into the base weights (``llm`` untouched).

    The copy needs as much memory as the model itself. Merged logits equal the adapter logits up to
    float rounding (~1e-6 relative in fp32).
    """
    import warnings

    clone = copy.deepcopy(llm)
    if is_peft_model(clone):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=FutureWarning)
            clone = clone.merge_and_unload()
    clone.requires_grad_(False)
    return clone
