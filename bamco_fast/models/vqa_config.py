"""Configuration and outputs of the knowledge-driven VQA model (:mod:`bamco_fast.models.vqa`)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from .lora import LORA_MODES

__all__ = ["KNOWLEDGE_INPUTS", "GeneratedAnswer", "VQAModelConfig"]

KNOWLEDGE_INPUTS = ("question", "entities")


@dataclass
class VQAModelConfig:
    """Configuration of :class:`VQAModel` (paper values as defaults).

    Attributes:
        llm: a local folder or a hub name loadable by ``AutoModelForCausalLM.from_pretrained``.
        knowledge_space: folder of the saved knowledge space (recorded in saved runs; ``""`` = none).
        lora: ``"lora"`` (adapters), ``"none"`` (train the whole LLM) or ``"frozen"`` (projectors only).
        lora_r, lora_alpha, lora_dropout: LoRA rank, alpha (scale alpha/r) and dropout.
        use_image, use_knowledge, use_intra_class: branch switches (ablations).
        patch_positional: ViT patch tokens with positional embeddings (see the module docstring).
        pool: pooling window of the patch grid.
        knowledge_input: ``"question"`` or ``"entities"``.
        knowledge_tokens: tokens produced by the knowledge projector.
        num_intra_images: ``K`` images per intra-class stack (``0`` = the knowledge space's ``num_images``).
        projector_dropout: dropout inside the vector projectors.
        max_length: longest training sequence (prompt + answer + eos), in tokens.
        max_new_tokens: default generation length.
        dtype: LLM weight dtype at load (``"float32"``, ``"bfloat16"``, ``"float16"``, ``"auto"``).
        answer_only_logits: project only the answer positions onto the vocabulary in the loss
            (:mod:`bamco_fast.models.answer_logits`); ``False`` = logits at every position (published).
    """

    llm: str
    knowledge_space: str = ""
    lora: str = "lora"
    lora_r: int = 64
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    use_image: bool = True
    use_knowledge: bool = True
    use_intra_class: bool = True
    patch_positional: bool = True
    pool: int = 2
    knowledge_input: str = "question"
    knowledge_tokens: int = 1
    num_intra_images: int = 0
    projector_dropout: float = 0.1
    max_length: int = 256
    max_new_tokens: int = 32
    dtype: str = "float32"
    answer_only_logits: bool = True

    def __post_init__(self) -> None:
        if not str(self.llm).strip():
            raise ValueError("llm: expected a model folder or hub name, got an empty string")
        if self.lora not in LORA_MODES:
            raise ValueError(f"lora: expected one of {LORA_MODES}, got {self.lora!r}")
        if self.knowledge_input not in KNOWLEDGE_INPUTS:
            raise ValueError(
                f"knowledge_input: expected one of {KNOWLEDGE_INPUTS}, got {self.knowledge_input!r}"
            )
        for name in ("knowledge_tokens", "pool", "max_length", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if self.num_intra_images < 0:
            raise ValueError(f"num_intra_images: expected >= 0, got {self.num_intra_images}")

    @classmethod
    def from_dict(cls, data: dict) -> VQAModelConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"VQAModelConfig: unknown keys {unknown}; valid keys: {sorted(known)}")
        return cls(**data)


@dataclass(frozen=True)
class GeneratedAnswer:
    """One generated answer: decoded text, generated token ids (eos excluded), retrieved class name."""

    text: str
    tokens: tuple[int, ...]
    retrieved_entity: str | None = None
