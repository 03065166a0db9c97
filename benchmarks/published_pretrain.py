"""A reproduction of the published knowledge-space pretraining step, the timing peer of bench_pretrain_step.

What one published step does (``official_code_notes.md`` §2.2-2.6), re-expressed here:

* **data**, per sample: the record's image opened and decoded with PIL, then K = 36 intra-class images
  (with probability 0.8 drawn with replacement from the class's pool, else the record's own image K
  times), each opened and decoded again (1 + K decodes per sample, 37 at the paper's shapes) and put
  through torchvision's PIL transforms one view at a time (RandomResizedCrop(scale 0.08-1), horizontal
  flip, ColorJitter(0.4, 0.4, 0.4, hue 0 / 0.1), RandomGrayscale(0.2), RandAugment(2 ops, magnitude 10;
  torchvision's, standing in for the timm-style one), ToTensor, Normalize); the text drawn with the
  two-draw rule (entity if u1 < 0.33, else relation if u2 < 0.66, else definition);
* **towers**: the texts tokenised (padded to the context length, 256) and both frozen towers run on
  every step, the text tower included;
* **encoder**: the intra-class encoder in plain eager torch (``IntraClassEncoder(backend="reference")``)
  on the published ``view`` layout of the stack;
* **loss**: the logit-adjusted cross-entropy plus the three pairwise balanced contrastive losses, each
  computed by the published per-call recipe (:func:`official_style.official_style_loss`: a host-side
  class count, a Python list of per-key class sizes, dense masks);
* **optimiser**: AdamW, lr 1e-3, weight decay 0.2 on matrices.

Images are converted to RGB (the published Slake/VQA-RAD loader does not convert, which breaks
``Normalize`` on grayscale files). Everything runs in float32 (the published code's fp16 autocast is
CUDA only). Kept in ``benchmarks/``: a timing peer, never a code path of the library.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from official_style import official_style_loss
from step_profile import StepProfiler, adamw_as_published

from bamco_fast.models.knowledge_space import KnowledgeSpace, KnowledgeSpaceConfig
from bamco_fast.models.towers import Towers
from bamco_fast.pretraining import CLIP_MEAN, CLIP_STD, KnowledgeTable


def published_pipeline(size: int, hue: float):
    """The published training augmentation of one PIL image at ``size`` px (hue jitter 0 for the
    reference view, 0.1 for intra-class views): RandomResizedCrop(0.08-1), flip, colour jitter 0.4,
    grayscale 0.2, RandAugment(2, 10), CLIP normalisation."""
    from torchvision import transforms as T

    return T.Compose(
        [
            T.RandomResizedCrop(size, scale=(0.08, 1.0)),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.4, 0.4, 0.4, hue),
            T.RandomGrayscale(0.2),
            T.RandAugment(num_ops=2, magnitude=10),
            T.ToTensor(),
            T.Normalize(CLIP_MEAN, CLIP_STD),
        ]
    )


class PILLoader:
    """Per-sample PIL loading and augmentation of the published pipeline (see the module docstring).

    Args:
        table: the knowledge table (records, pools, strings).
        num_images: K, intra-class images per sample.
        image_size, intra_image_size: sides of the reference view and of the intra-class views.
        seed: seeds the loader's own ``random.Random`` (sampling) and torch's global RNG is used by the
            torchvision transforms, as in a data-loader worker.
    """

    def __init__(
        self,
        table: KnowledgeTable,
        *,
        num_images: int = 36,
        image_size: int = 224,
        intra_image_size: int = 84,
        seed: int = 0,
    ) -> None:
        self.table = table
        self.num_images = num_images
        self.rng = random.Random(seed)
        self.paths = table.image_paths

        self.reference = published_pipeline(image_size, hue=0.0)
        self.intra = published_pipeline(intra_image_size, hue=0.1)

    def open(self, image: int):
        """Open and fully decode cache-free image ``image`` (an index into ``table.images``) as RGB."""
        from PIL import Image

        with Image.open(self.paths[image]) as handle:
            return handle.convert("RGB")

    def text(self, record: int) -> str:
        """The published two-draw text rule over (entity, relation, definition)."""
        row = self.table.record_text[record]
        if self.rng.random() < 0.33:
            kind = 0
        elif self.rng.random() < 0.66:
            kind = 2
        else:
            kind = 1
        return self.table.strings[int(row[kind])]

    def sample(self, record: int) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        """``(image (3, S, S), stack (K, 3, h, w), text, label)`` of record ``record``."""
        t = self.table
        label = int(t.record_class[record])
        own = int(t.record_image[record])
        image = self.reference(self.open(own))
        lo, hi = int(t.pool_offsets[label]), int(t.pool_offsets[label + 1])
        pool = t.pool_images[lo:hi].tolist()
        if self.rng.random() < 0.8:
            picks = [self.rng.choice(pool) for _ in range(self.num_images)]
        else:
            picks = [own] * self.num_images
        stack = torch.stack([self.intra(self.open(i)) for i in picks])
        return image, stack, self.text(record), label

    def batch(self, records: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, list[str], torch.Tensor]:
        """``images (B, 3, S, S)``, ``stacks (B, K, 3, h, w)``, ``texts`` (B strings), ``labels (B,)``."""
        images, stacks, texts, labels = zip(*(self.sample(int(r)) for r in records))
        return torch.stack(images), torch.stack(stacks), list(texts), torch.tensor(labels)


def published_objective(
    logits: torch.Tensor,
    image: torch.Tensor,
    text: torch.Tensor,
    intra: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    class_counts: torch.Tensor,
    temperature: float = 0.07,
) -> dict[str, torch.Tensor]:
    """The published total loss, term by term.

    ``ce = CE(logits + log(counts / sum counts), labels)``; ``L1 = BalSCL([image, text])``,
    ``L2 = BalSCL([image, intra])``, ``L3 = BalSCL([intra, text])`` (each with the prototypes as extra
    keys, :func:`official_style.official_style_loss`); ``loss = 0.5 ce + 0.5 (L1 + L2 + L3) / 3``.

    Shapes: logits (B, C); image, text, intra (B, D) unit rows; labels (B,); prototypes (C, D);
    class_counts (C,). Returns scalars ``ce_loss``, ``contrastive_loss`` (the mean of the three) and ``loss``.
    """
    prior = class_counts.to(logits.dtype) / class_counts.sum()
    ce = F.cross_entropy(logits + torch.log(prior).to(logits.device), labels)
    pairs = ((image, text), (image, intra), (intra, text))
    contrastive = (
        sum(official_style_loss(torch.stack(p, dim=1), labels, prototypes, temperature) for p in pairs) / 3
    )
    return {"ce_loss": ce, "contrastive_loss": contrastive, "loss": 0.5 * ce + 0.5 * contrastive}


def published_model(
    config: KnowledgeSpaceConfig, class_names: Sequence[str], towers: Towers, *, layout: str = "official"
) -> KnowledgeSpace:
    """The knowledge space with the eager encoder (``intra_backend="reference"``) and, by default, the
    published ``view`` layout of the stack; ``towers`` may be shared with another model (frozen)."""
    fields = dict(config.to_dict(), intra_backend="reference", intra_layout=layout)
    return KnowledgeSpace(KnowledgeSpaceConfig(**fields), class_names, towers=towers)


@dataclass
class StepResult:
    """One step: phase times (seconds; see :mod:`step_profile`) and the loss terms (floats)."""

    times: dict[str, float]
    losses: dict[str, float]


class PublishedPipeline:
    """Data + per-step frozen towers + eager encoder + Python-loop loss + AdamW, one step per call.

    Args:
        table: training knowledge table.
        model: e.g. :func:`published_model`; its trainable parameters are optimised.
        num_images, image_size, intra_image_size: sample shapes (must match the model).
        seed: loader seed.
    """

    def __init__(self, table: KnowledgeTable, model: KnowledgeSpace, *, seed: int = 0) -> None:
        cfg = model.config
        self.table = table
        self.model = model.train()
        self.loader = PILLoader(
            table,
            num_images=cfg.num_images,
            image_size=model.towers.image_size,
            intra_image_size=cfg.intra_image_size,
            seed=seed,
        )
        self.class_counts = table.class_counts.clone()
        self.optimizer = adamw_as_published(model)
        self.profiler = StepProfiler(model)

    def losses(
        self, images: torch.Tensor, tokens: torch.Tensor, stacks: torch.Tensor, labels: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Forward (both frozen towers run) and loss of one batch; ``tokens`` from ``towers.tokenize``."""
        out = self.model(images, tokens, stacks)
        return published_objective(
            out.logits,
            out.image,
            out.text,
            out.intra,
            labels,
            out.prototypes,
            self.class_counts,
            self.model.config.temperature,
        )

    def step(self, records: Sequence[int]) -> StepResult:
        """Load ``records`` (the batch) and take one optimiser step."""
        prof = self.profiler
        prof.start()
        with prof.phase("data"):
            images, stacks, texts, labels = self.loader.batch(records)
        with prof.phase("towers"):
            tokens = self.model.towers.tokenize(texts)
        with prof.forward_backward():
            terms = self.losses(images, tokens, stacks, labels)
            terms["loss"].backward()
        with prof.phase("optimiser"):
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return StepResult(prof.stop(), {k: float(v.detach()) for k, v in terms.items()})
