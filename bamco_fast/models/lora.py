"""How the language model is trained: LoRA adapters through peft, the whole model, or nothing.

``"lora"``   every weight of the LLM frozen; peft LoRA adapters (``target_modules="all-linear"``: Llama's
             q/k/v/o/gate/up/down projections, GPT-2's ``Conv1D`` c_attn/c_proj/c_fc, never the output
             head) trained. Paper values r=64, alpha=16 (scale alpha/r = 0.25), dropout 0.
``"none"``   no adapters: the whole LLM (embeddings included) is trained.
``"frozen"`` no adapters and nothing of the LLM trained (only the projectors learn).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

__all__ = ["LORA_MODES", "apply_lora", "is_peft_model", "merged_shards", "save_lora", "write_merged"]

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


def merged_shards(llm: nn.Module, max_shard_bytes: int) -> Iterator[dict[str, torch.Tensor]]:
    """The state dict of ``llm`` with its adapters merged (``W + (alpha / r) B A`` per LoRA layer), under the
    base model's own key names, in shards of about ``max_shard_bytes``.

    Only one shard of merged matrices exists at a time (the other tensors are the model's own), so merging
    needs one shard of extra memory, not a second model. A weight tied to an earlier one (the LM head of a
    model with tied embeddings) is left out, as ``save_pretrained`` does; loading ties it again.
    """
    from peft.tuners.lora import LoraLayer

    base = llm.get_base_model() if is_peft_model(llm) else llm
    layers = {name: m for name, m in base.named_modules() if isinstance(m, LoraLayer)}
    seen: set[tuple[int, tuple[int, ...]]] = set()
    shard: dict[str, torch.Tensor] = {}
    size = 0
    for key, tensor in base.state_dict().items():
        parts = key.split(".")
        if any(part.startswith("lora_") for part in parts):
            continue
        plain = key.replace(".base_layer.", ".")
        module, _, leaf = plain.rpartition(".")
        if (tensor.data_ptr(), tuple(tensor.shape)) in seen:
            continue
        seen.add((tensor.data_ptr(), tuple(tensor.shape)))
        layer = layers.get(module)
        if layer is not None and leaf == "weight":
            for adapter in layer.active_adapters:
                if adapter in layer.lora_A:
                    tensor = tensor + layer.get_delta_weight(adapter)
        if shard and size + tensor.nbytes > max_shard_bytes:
            yield shard
            shard, size = {}, 0
        shard[plain] = tensor.detach().contiguous()
        size += tensor.nbytes
    if shard:
        yield shard


def write_merged(llm: nn.Module, folder: Path, *, max_shard_bytes: int = 2 << 30) -> None:
    """Write ``llm`` with its adapters merged as a Hugging Face model folder (``config.json``, sharded
    ``model-XXXXX-of-YYYYY.safetensors`` + ``model.safetensors.index.json``), loadable alone by
    ``AutoModelForCausalLM.from_pretrained``; ``llm`` itself is not changed.

    Merged weights equal peft's ``merge_and_unload()`` bit for bit (the same ``W + delta`` in the weight's
    dtype); extra memory is one shard of about ``max_shard_bytes`` (default 2 GiB).
    """
    import copy
    import json

    from safetensors.torch import save_file

    from ..data.jsonio import atomic_write_text

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    base = llm.get_base_model() if is_peft_model(llm) else llm
    names: list[list[str]] = []
    total = 0
    with torch.no_grad():
        for i, shard in enumerate(merged_shards(llm, max_shard_bytes)):
            save_file(shard, str(folder / f".shard-{i:05d}.safetensors"), metadata={"format": "pt"})
            names.append(list(shard))
            total += sum(t.nbytes for t in shard.values())
    weight_map = {}
    for i, keys in enumerate(names):
        final = f"model-{i + 1:05d}-of-{len(names):05d}.safetensors"
        (folder / f".shard-{i:05d}.safetensors").rename(folder / final)
        weight_map.update(dict.fromkeys(keys, final))
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    atomic_write_text(folder / "model.safetensors.index.json", json.dumps(index, indent=2) + "\n")
    config = copy.deepcopy(base.config)
    config.architectures = [type(base).__name__]
    config.save_pretrained(str(folder))
    generation = getattr(base, "generation_config", None)
    if generation is not None:
        generation.save_pretrained(str(folder))
