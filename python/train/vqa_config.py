"""Typed configuration of the VQA stage and its presets (paper values per dataset and LLM).

Paper / published-code values (BaMCo §3, official code notes §3.8-3.9): AdamW, lr 1e-4, cosine schedule with
10% linear warm-up, weight decay 0, 5 epochs, bf16 autocast on CUDA, loss on the answer tokens and one
trailing eos, LoRA r=64, alpha=16 (dropout 0) on every attention and MLP projection, max length 256. The
published per-device batch is 100 with automatic shrinking on out-of-memory; the presets use 32, which
fits Llama 3.2 1B in bf16 on a 24 GB card (raise it on larger cards).

Presets are named ``DATASET-LLM``: ``DATASET`` in ``demo``, ``slake``, ``vqa-rad``, ``pathvqa``; ``LLM`` a
key of :data:`LLMS` (``llama-3.2-1b``, ``llama-3.2-3b``, ``gpt2-xl``) or ``tiny`` (a tiny Llama built
in the run folder from the training questions, for CPU runs). ``model.llm`` may also be any Hugging Face
hub name or local folder of a causal LM.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .config import ConfigError, LoopConfig, OptimConfig

__all__ = [
    "DATASET_ROOTS",
    "LLMS",
    "VQAConfig",
    "VQADataConfig",
    "VQAEvalConfig",
    "VQAModelSection",
    "preset",
    "preset_names",
]

#: Short LLM names -> Hugging Face hub names (the paper's three language models).
LLMS: dict[str, str] = {
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    "gpt2-xl": "openai-community/gpt2-xl",
}
#: Default data folders (relative to the working directory) of each dataset; "" = the packaged demo subset.
DATASET_ROOTS: dict[str, str] = {
    "demo": "",
    "slake": "../shared/data/slake",
    "vqa-rad": "../shared/data/vqa_rad/hf_flaviagiammarino_order",
    "pathvqa": "../shared/data/pathvqa",
}
TINY_LLM = "tiny"
_DATASETS = tuple(DATASET_ROOTS)


def _check(ok: bool, key: str, expected: str, got) -> None:
    if not ok:
        raise ConfigError(f"config key {key!r}: expected {expected}, got {got!r}")


@dataclass
class VQADataConfig:
    """Which records are trained on, selected on and evaluated (see :mod:`bamco_fast.train.vqa_splits`)."""

    dataset: str = "demo"  # demo | slake | vqa-rad | pathvqa
    root: str = ""  # dataset folder; "" = the packaged demo subset
    layout: str = "auto"
    lang: str = "en"  # question language ("all" keeps every language)
    eval_split: str = "auto"  # test | validate | auto (test when the copy has one)
    val_fraction: float = 0.1  # share of train images carved for validation where needed
    test_fraction: float = 0.1  # share of train images carved for test (PathVQA copies without test)
    split_seed: int = 0
    drop_leaked: bool = False  # drop shared (image, question) items instead of refusing to start
    max_train: int = 0  # keep only the first N records of each split (0 = all): smoke runs
    max_validate: int = 0
    max_evaluate: int = 0
    knowledge: str = ""  # knowledge file of the intra-class bank; "" = the knowledge-space run's
    knowledge_images: str = ""  # folder the knowledge file's images are relative to
    knowledge_image_map: str = ""  # id -> file name map (BaMCo's VQA-RAD ids), optional
    # Compute the frozen features (ViT patches, knowledge and intra-class embeddings) of the training and
    # validation questions once, instead of running the frozen towers and encoder every step.
    cache_frozen_features: bool = True

    def __post_init__(self) -> None:
        _check(self.dataset in _DATASETS, "data.dataset", f"one of {list(_DATASETS)}", self.dataset)
        _check(
            self.eval_split in ("auto", "test", "validate"),
            "data.eval_split",
            "auto, test or validate",
            self.eval_split,
        )
        _check(0 < self.val_fraction < 1, "data.val_fraction", "a number in (0, 1)", self.val_fraction)
        _check(0 < self.test_fraction < 1, "data.test_fraction", "a number in (0, 1)", self.test_fraction)
        for key in ("max_train", "max_validate", "max_evaluate"):
            _check(getattr(self, key) >= 0, f"data.{key}", "an integer >= 0 (0 = all)", getattr(self, key))


@dataclass
class VQAModelSection:
    """Fields passed to :class:`bamco_fast.models.vqa.VQAModelConfig` (same names)."""

    llm: str = LLMS["llama-3.2-1b"]  # hub name, local folder, a key of LLMS, or "tiny"
    lora: str = "lora"  # lora | none (whole LLM trained) | frozen
    lora_r: int = 64
    lora_alpha: int = 16
    use_image: bool = True
    use_knowledge: bool = True
    use_intra_class: bool = True
    patch_positional: bool = True  # False = the published patch path without positional embeddings
    knowledge_input: str = "question"  # question | entities (names of the classes found in the question)
    num_intra_images: int = 0  # K per intra-class stack; 0 = the knowledge space's num_images (36)
    max_length: int = 256
    intra_sampling: str = "question"  # question: a stack per question id; class: one per class (cached)
    plain_towers: bool = False  # Table 3 "no knowledge space": the towers only, no intra-class branch
    towers: str = ""  # open_clip name of the plain towers; "" = the knowledge space's (else BiomedCLIP)

    def __post_init__(self) -> None:
        _check(self.lora in ("lora", "none", "frozen"), "model.lora", "lora, none or frozen", self.lora)
        _check(self.lora_r >= 1, "model.lora_r", "an integer >= 1", self.lora_r)
        _check(
            self.knowledge_input in ("question", "entities"),
            "model.knowledge_input",
            "question or entities",
            self.knowledge_input,
        )
        _check(
            self.use_knowledge or self.knowledge_input == "question",
            "model.knowledge_input",
            "question when model.use_knowledge=false (the entities feed the knowledge branch)",
            self.knowledge_input,
        )
        _check(
            self.intra_sampling in ("question", "class"),
            "model.intra_sampling",
            "question or class",
            self.intra_sampling,
        )
        _check(self.max_length >= 8, "model.max_length", "an integer >= 8", self.max_length)


@dataclass
class VQAEvalConfig:
    """Generation and scoring of the evaluation split."""

    batch_size: int = 32
    max_new_tokens: int = 16
    closed_rule: str = "dataset"  # open/closed from the dataset's label; "yesno" = the published rule
    n_boot: int = 1000
    bertscore_model: str = ""  # local BERTScore model folder; "" = not computed

    def __post_init__(self) -> None:
        _check(self.batch_size >= 1, "eval.batch_size", "an integer >= 1", self.batch_size)
        _check(self.max_new_tokens >= 1, "eval.max_new_tokens", "an integer >= 1", self.max_new_tokens)


@dataclass
class VQAConfig:
    """The whole VQA run. ``warmup_ratio`` > 0 sets ``optim.warmup_steps`` to that share of all steps."""

    out: str = "runs/vqa"
    knowledge_space: str = ""  # run folder of the pretraining stage (its saved knowledge space)
    warmup_ratio: float = 0.1
    data: VQADataConfig = field(default_factory=VQADataConfig)
    model: VQAModelSection = field(default_factory=VQAModelSection)
    eval: VQAEvalConfig = field(default_factory=VQAEvalConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(lr=1e-4, weight_decay=0.0, warmup_steps=0, grad_clip=1.0)
    )
    loop: LoopConfig = field(
        default_factory=lambda: LoopConfig(
            epochs=5, batch_size=32, seed=25, precision="bf16", log_every_steps=10
        )
    )

    def __post_init__(self) -> None:
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio", "a number in [0, 1)", self.warmup_ratio)


def preset_names() -> list[str]:
    return [f"{d}-{m}" for d in _DATASETS for m in (*LLMS, TINY_LLM)]


def preset(name: str = "demo-tiny") -> VQAConfig:
    """The configuration called ``name`` (``DATASET-LLM``, see the module docstring)."""
    dataset = next((d for d in sorted(_DATASETS, key=len, reverse=True) if name.startswith(d + "-")), None)
    llm = name[len(dataset) + 1 :] if dataset else ""
    if dataset is None or (llm not in LLMS and llm != TINY_LLM):
        raise ConfigError(f"unknown VQA preset {name!r}; valid presets: {', '.join(preset_names())}")
    config = VQAConfig(out="runs/vqa-demo" if name == "demo-tiny" else f"runs/vqa-{name}")
    config.data = VQADataConfig(dataset=dataset, root=DATASET_ROOTS[dataset])
    config.model = VQAModelSection(llm=LLMS.get(llm, TINY_LLM))
    if dataset == "pathvqa":
        # No PathVQA knowledge source can be built offline: the towers-only configuration (Table 3, row 1).
        config.model.plain_towers = True
        config.model.use_intra_class = False
    if llm == TINY_LLM:
        # CPU-sized. The tiny LM is randomly initialised: there is no pretrained knowledge for adapters
        # to adapt, so the whole (0.1 M parameter) LM is trained; model.lora=lora runs the adapter path.
        # One intra-class stack per class: its frozen embedding is computed once (exact cache).
        config.model = dataclasses.replace(
            config.model, lora="none", lora_r=8, lora_alpha=2, max_length=96, intra_sampling="class"
        )
        config.loop = dataclasses.replace(
            config.loop, batch_size=16, precision="fp32", log_every_steps=5, num_threads=0
        )
        config.optim = dataclasses.replace(config.optim, lr=3e-3)
        config.eval = dataclasses.replace(config.eval, n_boot=200)
    if name == "demo-tiny":
        # The packaged demo: one thread, whose CPU time does not grow when other jobs share the cores.
        config.loop = dataclasses.replace(config.loop, num_threads=1)
    return config
