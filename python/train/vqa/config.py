"""Typed configuration of the VQA stage and its presets (paper values per dataset and LLM).

Paper / published-code values (BaMCo §3, official code notes §3.8-3.9): AdamW, lr 1e-4, cosine schedule with
10% linear warm-up, weight decay 0, 5 epochs, bf16 autocast on CUDA, loss on the answer tokens and one
trailing eos, LoRA r=64, alpha=16 (dropout 0) on every attention and MLP projection, max length 256. The
published per-device batch is 100 with automatic shrinking on out-of-memory; the presets use 32.

``model`` is the library's :class:`~bamco_fast.models.vqa_config.VQAModelConfig` itself, so every model
field can be set (``--set model.lora_r=16``); ``model.knowledge_space`` is the pretraining run the model
reads (``--knowledge-space RUN``), ``model.llm`` a hub name, a local folder, a key of :data:`LLMS`, or
``tiny`` (a tiny Llama built in the run folder from the training questions, for CPU runs).

Presets are named ``DATASET-LLM`` (:data:`PRESETS`): ``DATASET`` in ``demo``, ``slake``, ``vqa-rad``,
``pathvqa``; ``LLM`` a key of :data:`LLMS` or ``tiny``.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from bamco_fast.data.vqa_splits import SPLIT_DEFAULTS
from bamco_fast.models.vqa_config import VQAModelConfig

from ..core.config import DATASET_ROOTS, LoopConfig, OptimConfig, check_value

__all__ = ["DATASET_ROOTS", "LLMS", "PRESETS", "TINY_LLM", "VQAConfig", "VQADataConfig", "VQAEvalConfig"]

#: Short LLM names -> Hugging Face hub names (the paper's three language models).
LLMS: dict[str, str] = {
    "llama-3.2-1b": "meta-llama/Llama-3.2-1B",
    "llama-3.2-3b": "meta-llama/Llama-3.2-3B",
    "gpt2-xl": "openai-community/gpt2-xl",
}
TINY_LLM = "tiny"
_DATASETS = tuple(DATASET_ROOTS)


def _path(default: str = ""):
    return field(default=default, metadata={"path": True})


@dataclass
class VQADataConfig:
    """Which records are trained on, selected on and evaluated (see :mod:`bamco_fast.data.vqa_splits`)."""

    dataset: str = "demo"  # demo | slake | vqa-rad | pathvqa
    root: str = _path()  # dataset folder; "" = the packaged demo subset
    layout: str = str(SPLIT_DEFAULTS["layout"])
    lang: str = str(SPLIT_DEFAULTS["lang"])  # question language ("all" keeps every language)
    eval_split: str = str(SPLIT_DEFAULTS["eval_split"])  # test | validate | auto (test when the copy has one)
    val_fraction: float = float(SPLIT_DEFAULTS["val_fraction"])  # share of train images carved for validation
    test_fraction: float = float(
        SPLIT_DEFAULTS["test_fraction"]
    )  # share carved for test (PathVQA, train only)
    split_seed: int = int(SPLIT_DEFAULTS["seed"])
    drop_leaked: bool = False  # drop shared (image, question) items instead of refusing to start
    max_train: int = 0  # keep only the first N records of each split (0 = all): smoke runs
    max_validate: int = 0
    max_evaluate: int = 0
    knowledge: str = _path()  # knowledge file of the intra-class bank; "" = the knowledge-space run's
    knowledge_images: str = _path()  # folder the knowledge file's images are relative to
    knowledge_image_map: str = _path()  # id -> file name map (BaMCo's VQA-RAD ids), optional
    # Compute the frozen features (ViT patches, knowledge and intra-class embeddings) of the training and
    # validation questions once, instead of running the frozen towers and encoder every step.
    cache_frozen_features: bool = True

    def __post_init__(self) -> None:
        check_value(self.dataset in _DATASETS, "data.dataset", f"one of {list(_DATASETS)}", self.dataset)
        check_value(
            self.eval_split in ("auto", "test", "validate"),
            "data.eval_split",
            "auto, test or validate",
            self.eval_split,
        )
        check_value(0 < self.val_fraction < 1, "data.val_fraction", "a number in (0, 1)", self.val_fraction)
        check_value(
            0 < self.test_fraction < 1, "data.test_fraction", "a number in (0, 1)", self.test_fraction
        )
        for key in ("max_train", "max_validate", "max_evaluate"):
            check_value(
                getattr(self, key) >= 0, f"data.{key}", "an integer >= 0 (0 = all)", getattr(self, key)
            )


@dataclass
class VQAEvalConfig:
    """Generation and scoring of the evaluation split (``model.max_new_tokens``: the answer length)."""

    batch_size: int = 32
    closed_rule: str = "dataset"  # open/closed from the dataset's label; "yesno" = the published rule
    n_boot: int = 1000
    bertscore_model: str = _path()  # local BERTScore model folder; "" = not computed

    def __post_init__(self) -> None:
        check_value(self.batch_size >= 1, "eval.batch_size", "an integer >= 1", self.batch_size)
        check_value(
            self.closed_rule in ("dataset", "yesno"), "eval.closed_rule", "dataset or yesno", self.closed_rule
        )
        check_value(0 <= self.n_boot <= 100_000, "eval.n_boot", "an integer in [0, 100000]", self.n_boot)


@dataclass
class VQAConfig:
    """The whole VQA run. ``warmup_ratio`` > 0 sets ``optim.warmup_steps`` to that share of all steps."""

    out: str = _path("runs/vqa")
    warmup_ratio: float = 0.1
    data: VQADataConfig = field(default_factory=VQADataConfig)
    model: VQAModelConfig = field(
        default_factory=lambda: VQAModelConfig(llm=LLMS["llama-3.2-1b"], max_new_tokens=16)
    )
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
        check_value(0 <= self.warmup_ratio < 1, "warmup_ratio", "a number in [0, 1)", self.warmup_ratio)


def _preset(dataset: str, llm: str) -> VQAConfig:
    """The ``DATASET-LLM`` preset (see the module docstring)."""
    name = f"{dataset}-{llm}"
    config = VQAConfig(out="runs/vqa-demo" if name == "demo-tiny" else f"runs/vqa-{name}")
    config.data = VQADataConfig(dataset=dataset, root=DATASET_ROOTS[dataset])
    model = {"llm": LLMS.get(llm, TINY_LLM)}
    if dataset == "pathvqa":
        # No PathVQA knowledge source can be built offline: the towers-only configuration (Table 3, row 1).
        model.update(plain_towers=True, use_intra_class=False)
    if llm == TINY_LLM:
        # CPU-sized. The tiny LM is randomly initialised: there is no pretrained knowledge for adapters
        # to adapt, so the whole (0.1 M parameter) LM is trained; model.lora=lora runs the adapter path.
        # One intra-class stack per class: its frozen embedding is computed once (exact cache).
        model.update(lora="none", lora_r=8, lora_alpha=2, max_length=96, intra_sampling="class")
        config.loop = dataclasses.replace(config.loop, batch_size=16, precision="fp32", log_every_steps=5)
        config.optim = dataclasses.replace(config.optim, lr=3e-3)
        config.eval = dataclasses.replace(config.eval, n_boot=200)
    config.model = dataclasses.replace(config.model, **model)
    if name == "demo-tiny":
        # The packaged demo: one thread, whose CPU time does not grow when other jobs share the cores.
        config.loop = dataclasses.replace(config.loop, num_threads=1)
    return config


#: Preset name -> configuration function (``DATASET-LLM``, see the module docstring).
PRESETS: dict[str, Callable[[], VQAConfig]] = {
    f"{d}-{m}": functools.partial(_preset, d, m) for d in _DATASETS for m in (*LLMS, TINY_LLM)
}
