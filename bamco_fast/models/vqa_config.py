"""Configuration and outputs of the knowledge-driven VQA model (:mod:`bamco_fast.models.vqa`)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from .lora import LORA_MODES
from .retrieval import SAMPLING_MODES

__all__ = ["KNOWLEDGE_INPUTS", "GeneratedAnswer", "VQAModelConfig"]

KNOWLEDGE_INPUTS = ("question", "entities")


@dataclass
class VQAModelConfig:
    """Configuration of :class:`VQAModel` (paper values as defaults).

    Attributes:
        llm: a local folder or a hub name loadable by ``AutoModelForCausalLM.from_pretrained``.
        knowledge_space: the saved knowledge space, or the pretraining run folder holding it (recorded in
            saved runs; ``""`` = none).
        plain_towers: Table 3's "no knowledge space": the towers alone stand in for the knowledge space
            (:class:`~bamco_fast.models.plain_towers.PlainTowers`); there is no intra-class branch.
        towers: open_clip name of the plain towers (``""``: the knowledge space's, else BiomedCLIP).
        intra_sampling: how the intra-class bank draws a stack: ``"question"`` (seeded per question id)
            or ``"class"`` (one stack per class).
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

    llm: str = field(metadata={"path": True})
    knowledge_space: str = field(default="", metadata={"path": True})
    plain_towers: bool = False
    towers: str = field(default="", metadata={"path": "local-dir"})
    intra_sampling: str = "question"
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
        for name in ("knowledge_tokens", "pool", "max_new_tokens", "lora_r"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected at least 1, got {getattr(self, name)}")
        if self.max_length < 8:
            raise ValueError(f"max_length: expected at least 8 tokens, got {self.max_length}")
        if not self.use_knowledge and self.knowledge_input != "question":
            raise ValueError(
                f"knowledge_input: expected 'question' when use_knowledge is false (the entities feed the "
                f"knowledge branch), got {self.knowledge_input!r}"
            )
        if self.intra_sampling not in SAMPLING_MODES:
            raise ValueError(f"intra_sampling: expected one of {SAMPLING_MODES}, got {self.intra_sampling!r}")
        if not 0 <= self.lora_dropout < 1 or not 0 <= self.projector_dropout < 1:
            raise ValueError(
                f"lora_dropout, projector_dropout: expected numbers in [0, 1), got {self.lora_dropout}, "
                f"{self.projector_dropout}"
            )
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
