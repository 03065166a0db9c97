"""Loading language models and writing / reading saved VQA runs.

A saved run (:func:`save_trainable`) is a folder::

    vqa.json                 format, version, VQAModelConfig (knowledge-space folder as an absolute path),
                             LLM hidden size, placeholder token ids, what holds the LLM weights
    projectors.safetensors   image / knowledge / intra-class projectors
    tokenizer/               the tokenizer with its added special tokens
    adapter/                 peft LoRA adapters only (lora="lora"; no embedding matrices)
    llm/                     the whole LLM (lora="none", and merged folders written by :func:`merge`)
    entities.json            the entity vocabulary of ``knowledge_input="entities"`` (only then)

The frozen towers, text head and intra-class encoder are never copied: the run records the
knowledge-space folder and loads it from there. Folders are published atomically.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from .entity_input import ENTITIES_FILE, EntityTexts
from .lora import is_peft_model, save_lora, write_merged
from .vqa_config import VQAModelConfig

__all__ = [
    "load_llm",
    "load_model",
    "load_tokenizer",
    "load_trainable",
    "merge",
    "read_vqa_meta",
    "save_trainable",
]

_FORMAT = "bamco_fast.vqa"
_VERSION = 1
_META = "vqa.json"
_PROJECTORS = "projectors.safetensors"


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _torch_dtype(name: str):
    if name == "auto":
        return "auto"
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise ValueError(f"dtype: expected float32, bfloat16, float16 or auto, got {name!r}") from None


def load_llm(name: str | Path, dtype: str = "float32") -> nn.Module:
    """``AutoModelForCausalLM.from_pretrained(name, dtype=...)`` with quiet logs.

    The weight-dtype argument is ``dtype`` from transformers 4.56 on, ``torch_dtype`` before.
    """
    import transformers
    from packaging.version import Version
    from transformers import AutoModelForCausalLM

    from .sources import ModelSourceError

    _quiet_transformers()
    key = "dtype" if Version(transformers.__version__) >= Version("4.56") else "torch_dtype"
    try:
        return AutoModelForCausalLM.from_pretrained(str(name), **{key: _torch_dtype(dtype)})
    except Exception as exc:  # truncated or mismatched weight files (safetensors raises its own type)
        message = " ".join(str(exc).split())[:400]
        raise ModelSourceError(
            f"model.llm: cannot load the language model {str(name)!r}: {message}"
        ) from None


def load_tokenizer(name: str | Path):
    from transformers import AutoTokenizer

    _quiet_transformers()
    return AutoTokenizer.from_pretrained(str(name))


def read_vqa_meta(folder: Path) -> dict:
    """Read and check ``folder/vqa.json`` written by :meth:`VQAModel.save_trainable`."""
    from ..data.jsonio import read_json

    path = Path(folder) / _META
    if not path.is_file():
        raise FileNotFoundError(f"{folder}: not a saved VQA model (no {_META})")
    meta = read_json(path, "VQA model description")
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT or meta.get("version") != _VERSION:
        raise ValueError(f"{path}: expected format {_FORMAT!r} version {_VERSION}")
    return meta


def resize_with_mean_rows(llm: nn.Module, size: int) -> None:
    """Grow the vocabulary to ``size`` rows; new input/output rows = the mean of the old rows."""
    old = llm.get_input_embeddings().weight.shape[0]
    llm.resize_token_embeddings(size, mean_resizing=False)  # rows are set below, not sampled
    with torch.no_grad():
        for emb in (llm.get_input_embeddings(), llm.get_output_embeddings()):
            if emb is not None and emb.weight.shape[0] == size:
                emb.weight[old:] = emb.weight[:old].mean(dim=0, keepdim=True)
                bias = getattr(emb, "bias", None)
                if bias is not None and bias.shape[0] == size:
                    bias[old:] = bias[:old].mean()


def _meta(model, llm_saved: str, lora: str) -> dict:
    config = asdict(model.config)
    config["lora"] = lora
    if config["knowledge_space"]:
        config["knowledge_space"] = str(Path(config["knowledge_space"]).absolute())
    return {
        "format": _FORMAT,
        "version": _VERSION,
        "config": config,
        "hidden_size": model.hidden_size,
        "llm_saved": llm_saved,
        "tokens": model.token_ids,
    }


def _write_common(model, folder: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    from ..data.jsonio import atomic_write_text

    save_file(
        {k: v.contiguous().cpu() for k, v in model.projector_state_dict().items()},
        str(folder / _PROJECTORS),
    )
    model.tokenizer.save_pretrained(str(folder / "tokenizer"))
    if getattr(model, "entities", None) is not None:
        model.entities.save(folder)
    atomic_write_text(folder / _META, json.dumps(meta, indent=2) + "\n")


def save_trainable(model, folder: Path | str, *, overwrite: bool = True) -> Path:
    """Write the projectors, the tokenizer, the adapters (or the whole LLM for ``lora="none"``) and a
    reference to the knowledge-space folder — never the frozen towers. Published atomically."""
    from ._folders import staged_folder

    mode = model.config.lora
    llm_saved = {"lora": "adapter", "none": "llm", "frozen": "base"}[mode]
    with staged_folder(Path(folder), overwrite=overwrite, what="VQAModel.save_trainable") as stage:
        if mode == "lora":
            save_lora(model.llm, stage / "adapter")
        elif mode == "none":
            model.llm.save_pretrained(str(stage / "llm"))
        _write_common(model, stage, _meta(model, llm_saved, mode))
    return Path(folder)


def merge(model, folder: Path | str, *, overwrite: bool = True) -> Path:
    """Write a standalone folder: the LLM with adapters merged (``folder/llm``, loadable alone by
    ``AutoModelForCausalLM``/``AutoTokenizer``), projectors, tokenizer and the knowledge-space reference.
    :meth:`load` reads it like any saved run. Merged weights are written shard by shard
    (:func:`~bamco_fast.models.lora.write_merged`): the extra memory is one shard, not a second LLM."""
    from ._folders import staged_folder

    with staged_folder(Path(folder), overwrite=overwrite, what="VQAModel.merge") as stage:
        write_merged(model.llm, stage / "llm")
        model.tokenizer.save_pretrained(str(stage / "llm"))
        meta = _meta(model, "llm", "none")
        meta["merged_from"] = model.config.lora
        _write_common(model, stage, meta)
    return Path(folder)


def load_trainable(model, folder: Path | str, *, llm_weights: bool = True) -> None:
    """Load what :meth:`save_trainable` wrote into this model (same config and hidden size)."""
    from ._folders import read_safetensors

    folder = Path(folder)
    meta = read_vqa_meta(folder)
    if meta["hidden_size"] != model.hidden_size:
        raise ValueError(
            f"llm: hidden size {model.hidden_size} does not match the saved projectors' {meta['hidden_size']} "
            f"({folder / _META})"
        )
    state = read_safetensors(folder / _PROJECTORS, "projector weights")
    own = model.projector_state_dict()
    if set(state) != set(own):
        raise ValueError(
            f"{folder / _PROJECTORS}: projectors {sorted(state)[:4]}... do not match this model's branches "
            f"{sorted(own)[:4]}..."
        )
    for name, value in state.items():
        if own[name].shape != value.shape:
            raise ValueError(
                f"{folder / _PROJECTORS}: {name} has shape {tuple(value.shape)}, expected {tuple(own[name].shape)}"
            )
        own[name].copy_(value.to(own[name].device))
    if not llm_weights:
        return
    if meta["llm_saved"] == "adapter":
        from peft import set_peft_model_state_dict

        if not is_peft_model(model.llm):
            raise ValueError(f"{folder}: holds LoRA adapters but this model has lora={model.config.lora!r}")
        adapter = read_safetensors(folder / "adapter" / "adapter_model.safetensors", "LoRA adapter weights")
        result = set_peft_model_state_dict(model.llm, {k: v.to(model.device) for k, v in adapter.items()})
        unexpected = list(getattr(result, "unexpected_keys", []) or [])
        if unexpected:
            raise ValueError(
                f"{folder / 'adapter'}: adapter weights this model does not have: {unexpected[:5]}"
            )
    elif meta["llm_saved"] == "llm":
        saved = load_llm(folder / "llm", model.config.dtype)
        model.llm.load_state_dict(saved.state_dict())


def load_model(
    cls,
    folder: Path | str,
    *,
    knowledge_space: nn.Module | None = None,
    knowledge_space_dir: Path | str | None = None,
    intra_bank=None,
    device: torch.device | str | None = None,
    **overrides,
) -> nn.Module:
    """Rebuild a model of class ``cls`` saved by :func:`save_trainable` or :func:`merge`; predictions are
    reproduced exactly.

    Args:
        knowledge_space: the knowledge space to use; default: load the folder the run references.
        knowledge_space_dir: load the knowledge space from this folder instead of the recorded one.
        intra_bank: the intra-class bank (not saved with the run; rebuilt from the knowledge records).
        device: where to put the model.
        overrides: config fields to change (e.g. ``llm=`` when the base model moved).
    """
    folder = Path(folder)
    meta = read_vqa_meta(folder)
    if knowledge_space_dir is not None:
        overrides["knowledge_space"] = str(knowledge_space_dir)
    config = VQAModelConfig.from_dict({**meta["config"], **overrides})
    if knowledge_space is None:
        ref = config.knowledge_space
        if not ref or not Path(ref).is_dir():
            raise FileNotFoundError(
                f"{folder / _META}: the run's knowledge space {ref!r} is not a folder; pass "
                "knowledge_space=<KnowledgeSpace> or knowledge_space_dir=PATH"
            )
        from .knowledge_space import KnowledgeSpace

        knowledge_space = KnowledgeSpace.load(Path(ref), device=device)
    tokenizer = load_tokenizer(folder / "tokenizer")
    vocab = tokenizer.get_vocab()
    missing = [t for t in (cls.IMAGE_TOKEN, cls.KNOWLEDGE_TOKEN, cls.INTRA_TOKEN) if t not in vocab]
    if missing:
        raise ValueError(f"{folder / 'tokenizer'}: the saved tokenizer lacks the special tokens {missing}")
    from_folder = meta["llm_saved"] == "llm"
    llm = load_llm(folder / "llm" if from_folder else config.llm, config.dtype)
    entities = None
    if (folder / ENTITIES_FILE).is_file():
        entities = EntityTexts.load(folder)
    elif config.knowledge_input == "entities":
        raise ValueError(
            f"{folder}: a run with knowledge_input='entities' must hold its entity vocabulary {ENTITIES_FILE}"
        )
    model = cls(config, knowledge_space, llm, tokenizer, intra_bank, entities)
    if device is not None:
        model.to(device)
    model.load_trainable(folder, llm_weights=not from_folder)
    model.eval()
    return model
