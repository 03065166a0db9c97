"""Configuration of the pretraining stage and its presets (slake, vqa-rad, pathvqa, demo).

The presets hold the paper's values (batch 48, 300 epochs, AdamW lr 1e-3 with weight decay 0.2 on
matrices, 5 warm-up steps then cosine, 512-d space, K = 36 intra-class images of 84x84, text context 256
from BiomedCLIP's tokenizer); paths point at ``../shared/data`` style locations and are meant to be
overridden with ``--set data.train_knowledge=... data.image_root=...``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field

from bamco_fast.models.knowledge_space import KnowledgeSpaceConfig

from ..core.config import DATASET_ROOTS, LoopConfig, OptimConfig, check_value

__all__ = [
    "PRESETS",
    "DataConfig",
    "EvalConfig",
    "ObjectiveConfig",
    "PretrainConfig",
    "TinyTowersConfig",
]

PUBLISHED_TEXT_PROBABILITIES = (0.33, 0.67 * 0.34, 0.67 * 0.66)  # entity, definition, relation


@dataclass
class DataConfig:
    """Knowledge records and images.

    ``train_knowledge``/``val_knowledge`` are knowledge files (JSON list of 7-field records, as written by
    ``python -m bamco_fast.knowledge build``); images are relative to ``image_root``. With no
    ``val_knowledge``, ``val_fraction`` of the training *images* (and all their records) are held out
    for validation (seeded), so no validation image is seen in training.

    ``vqa_root`` (the ``dataset``'s VQA folder) makes both stages share one validation split: the
    validation records are then the records (of ``train_knowledge`` and ``val_knowledge``) of the images
    the VQA stage selects on — its validation split with its defaults (the copy's own validate split when
    it has a test split, else carved from train by image with ``val_fraction`` and ``split_seed``) — and
    no record of those images is trained on. Without it, a knowledge space pretrained on Slake train and
    selected on Slake validate would be selected on the split a test-less Slake copy evaluates VQA on.
    """

    dataset: str = "slake"
    train_knowledge: str = field(default="", metadata={"path": True})
    val_knowledge: str = field(default="", metadata={"path": True})
    image_root: str = field(default="", metadata={"path": True})
    image_map: str = field(
        default="", metadata={"path": True}
    )  # optional JSON {id: file name} for knowledge files that use generated image ids
    val_fraction: float = 0.1
    vqa_root: str = field(
        default="", metadata={"path": True}
    )  # VQA dataset folder whose validation images are held out (see above); "" = off
    split_seed: int = 0  # seed of the VQA stage's carve (its data.split_seed), with vqa_root
    missing_definition: str = "name"  # def_head null -> entity name ("name") or drop the record ("drop")
    intra_from_pool_p: float = 0.8
    text_probabilities: tuple[float, float, float] = PUBLISHED_TEXT_PROBABILITIES
    augment_reference: bool = True
    augment_intra: bool = True
    cache_image_features: bool = False  # needs augment_reference=false (a change from the paper)
    cache_resolution: int = 0  # side of the decoded uint8 cache; 0 = max(256, image size)
    max_train_records: int = 0  # keep only the first N training records (0 = all): smoke runs, rehearsals
    max_val_records: int = 0  # keep only the first N validation records (0 = all)
    cache_file: str = field(
        default="", metadata={"path": True}
    )  # optional path of an on-disk image cache (reused when its sources are unchanged)

    def __post_init__(self) -> None:
        check_value(0 <= self.val_fraction < 1, "data.val_fraction", "a number in [0, 1)", self.val_fraction)
        for key in ("max_train_records", "max_val_records"):
            check_value(
                getattr(self, key) >= 0, f"data.{key}", "an integer >= 0 (0 = all)", getattr(self, key)
            )
        check_value(
            self.missing_definition in ("name", "drop"),
            "data.missing_definition",
            "'name' or 'drop'",
            self.missing_definition,
        )
        check_value(
            not (self.cache_image_features and self.augment_reference),
            "data.cache_image_features",
            "false while data.augment_reference is true (the frozen image features can only be cached for an "
            "unaugmented reference image; set data.augment_reference=false as well)",
            self.cache_image_features,
        )


@dataclass
class ObjectiveConfig:
    """Training loss: ``"bamco"`` (the paper's) or ``"alignment"`` (plain CLIP contrastive baseline).

    ``alignment``: the mean over the pairs (f1, f3), (f1, f2), (f2, f3) of the symmetric InfoNCE loss
    with in-batch negatives at ``model.temperature`` (no classifier, no prototypes, no class balancing).
    """

    loss: str = "bamco"
    backend: str | None = None  # contrastive-loss backend: None (automatic), triton, cpp, reference

    def __post_init__(self) -> None:
        check_value(
            self.loss in ("bamco", "alignment"), "objective.loss", "'bamco' or 'alignment'", self.loss
        )


@dataclass
class EvalConfig:
    """Matching evaluation (:mod:`bamco_fast.matching`) on the validation records."""

    protocol: str = "full"  # "full" (all distinct strings) or "in-batch" (the published protocol)
    batch_size: int = 48  # chunk size of the in-batch protocol, and of evaluation forwards
    intra: str = (
        "repeat"  # intra-class stack at evaluation: "repeat" (own image K times, published) or "pool"
    )
    selection_metric: str = "mean"  # key of the matching scores used to choose best.pt

    def __post_init__(self) -> None:
        check_value(
            self.protocol in ("full", "in-batch"), "eval.protocol", "'full' or 'in-batch'", self.protocol
        )
        check_value(self.intra in ("repeat", "pool"), "eval.intra", "'repeat' or 'pool'", self.intra)
        check_value(self.batch_size >= 1, "eval.batch_size", "an integer >= 1", self.batch_size)


@dataclass
class TinyTowersConfig:
    """Tiny BiomedCLIP-shaped towers built into ``<out>/towers`` (demo/tests); used when ``enabled``.

    The WordPiece vocabulary is trained on the training strings; ``model.tower`` is then set to
    ``local-dir:<out>/towers`` and ``model.embed_dim`` to ``embed_dim``.
    """

    enabled: bool = False
    image_size: int = 64  # side of the square input images (a multiple of 16, >= 32)
    embed_dim: int = 64  # width of the image and text embeddings (and of the knowledge space)
    context_length: int = 64  # token sequence length of the text tower
    text_width: int = 64  # BERT hidden size
    text_layers: int = 2  # BERT layers
    vocab_size: int = 2000  # upper bound on the WordPiece vocabulary (special tokens included)
    seed: int = 0  # seeds the random weights (same values -> same towers)


@dataclass
class PretrainConfig:
    """Everything a pretraining run needs (``python -m bamco_fast.train pretrain``)."""

    data: DataConfig = field(default_factory=DataConfig)
    model: KnowledgeSpaceConfig = field(default_factory=KnowledgeSpaceConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tiny: TinyTowersConfig = field(default_factory=TinyTowersConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    out: str = field(default="runs/pretrain", metadata={"path": True})
    alignment: bool = False  # also train the plain-CLIP "alignment" baseline for the matching table


#: The paper presets' data (``data.*`` fields; paths relative to the working directory). Each one's
#: ``data.vqa_root`` is the VQA stage's folder of the dataset (:data:`DATASET_ROOTS`), so validation is
#: made of the images the VQA stage selects on.
_PAPER_DATA: dict[str, dict[str, str]] = {
    # our knowledge records of Slake train / validate (``python -m bamco_fast.knowledge build``); the VQA
    # stage selects on Slake validate, or on a carve of train when the copy has no test split (as ours)
    "slake": {
        "train_knowledge": "runs/knowledge/slake-train.json",
        "val_knowledge": "runs/knowledge/slake-validate.json",
        "image_root": "../shared/data/slake/imgs",
    },
    # BaMCo's published training records; the VQA stage carves validation from train (by image, 10%, seed 0)
    "vqa-rad": {
        "train_knowledge": "../shared/data/bamco_kg/VQARAD/KG_VQARAD_Train.json",
        "image_map": "../shared/data/bamco_kg/VQARAD/image_id_to_synpic.json",
        "image_root": "../shared/data/vqa_rad/VQA_RAD Image Folder",
    },
    # set data.train_knowledge to a PathVQA knowledge file (none can be built offline)
    "pathvqa": {"image_root": "../shared/data/pathvqa/images"},
}


def _paper(dataset: str) -> PretrainConfig:
    """The paper's training values on ``dataset`` (a key of :data:`_PAPER_DATA`)."""
    return PretrainConfig(
        data=DataConfig(dataset=dataset, vqa_root=DATASET_ROOTS[dataset], **_PAPER_DATA[dataset]),
        model=KnowledgeSpaceConfig(),  # BiomedCLIP towers, D = 512, K = 36 images of 84 x 84
        loop=LoopConfig(epochs=300, batch_size=48),
        optim=OptimConfig(lr=1e-3, weight_decay=0.2, warmup_steps=5),
        out=f"runs/pretrain-{dataset}",
    )


def demo() -> PretrainConfig:
    """The packaged VQA-RAD subset with tiny towers: about 70 CPU seconds (one thread).

    One thread (``loop.num_threads=1``): on a shared machine two threads spin-wait for each other (the
    same run took 85 CPU s when the cores were idle and 330 CPU s when they were busy); one thread costs
    about 70 CPU s either way.

    Differences from the paper, all for CPU time: tiny random towers built locally (64-d, 64-px images,
    context 64) instead of pretrained BiomedCLIP; K = 64 intra-class images of 32 x 32 (the smallest stack
    the encoder accepts) with encoder width 1 instead of K = 36 of 84 x 84 and width 12; batch 16 for 60
    steps (0.7 epoch) instead of batch 48 for 300 epochs; lr 2e-3; the reference image not augmented, so
    its frozen features are computed once. Where a step's time goes (1 thread): the intra-class encoder
    about 80% (forward 0.26 s, backward 0.59 s), data augmentation about 17% (0.18 s, RandAugment of the
    intra images half of it), frozen-feature lookups, loss and optimiser about 1%.

    What it can show: the pipeline end to end (checkpoint, ``metrics.jsonl``, ``curves.png``, matching
    table, the knowledge space the VQA stage reads). It cannot show the paper's gains: the random towers
    carry no knowledge (the tiny random BERT only tells strings apart: its CLS outputs have mean cosine
    ~0.85), f1 has no trainable projection, and validation is 7 images (176 records, 34 entities of which 13 are
    unseen in training), so an image->* top-1 moves in steps of whole images and differences of a few
    points are noise. The validation protocol stays the full candidate set.
    """
    from bamco_fast.demo_data import demo_paths

    paths = demo_paths()
    return PretrainConfig(
        data=DataConfig(
            dataset="demo",
            train_knowledge=str(paths.knowledge["train"]),
            val_knowledge=str(paths.knowledge["validate"]),
            image_root=str(paths.images),
            augment_reference=False,
            cache_image_features=True,
            cache_resolution=64,
        ),
        model=KnowledgeSpaceConfig(embed_dim=64, num_images=64, intra_image_size=32, feature_size=1),
        tiny=TinyTowersConfig(enabled=True),
        loop=LoopConfig(epochs=1, max_steps=60, batch_size=16, log_every_steps=5, num_threads=1),
        optim=OptimConfig(lr=2e-3, weight_decay=0.2, warmup_steps=5),
        out="runs/pretrain-demo",
    )


#: Preset name -> configuration function: the paper's datasets, then the packaged demo.
PRESETS: dict[str, Callable[[], PretrainConfig]] = {
    **{dataset: functools.partial(_paper, dataset) for dataset in _PAPER_DATA},
    "demo": demo,
}
