"""A reproduction of the published VQA training step, the timing peer of ``bench_vqa_step``.

What one published step does (``official_code_notes.md`` §3.1-3.9), re-expressed on our model's weights:

* **data**: each question image decoded with PIL and resized to 224; after retrieval, each question's
  K = 36 intra-class images drawn with replacement from the retrieved class's files (``random.choices``),
  each opened and decoded with PIL and put through RandomResizedCrop(84, scale 0.08-1), ToTensor and the
  CLIP normalisation (36 decodes per question, every step);
* **towers**: the frozen ViT run twice (the patch path without positional embeddings, and the full
  visual tower for the retrieval query), and the frozen text path on each question separately (a Python
  loop, batch of 1, tokens padded to the context length 256);
* **intra**: the intra-class encoder in plain eager torch (``set_backend("reference")``) on each stack;
* **llm** and **loss**: the prompt + answer right-padded to ``max_length`` = 256 tokens, and the LM
  head's logits at all 256 positions with the shifted cross-entropy over the answer tokens (the language
  model's ``labels=`` loss);
* **optimiser**: AdamW (lr 1e-4, weight decay 0) over the LoRA adapters and projectors.

Kept in ``benchmarks/``: a timing peer, never a code path of the library.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from vqa_step_profile import VQAStepProfiler

from bamco_fast.models.vqa_features import FrozenFeatures


@dataclass
class StepResult:
    """One step: phase times (seconds; see :mod:`vqa_step_profile`) and the loss."""

    times: dict[str, float]
    loss: float


def published_batch(tokenizer, prefix: Sequence[int], questions, answers, *, max_length: int = 256) -> dict:
    """Prompt + answer + eos, right-padded with the pad (= eos) token to ``max_length``; labels on the answer
    tokens and the eos only (``input_ids``, ``attention_mask``, ``labels`` (B, max_length) int64)."""
    eos, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    ids, masks, labels = [], [], []
    for question, answer in zip(questions, answers):
        prompt = list(prefix) + tokenizer(" " + question.strip(), add_special_tokens=False)["input_ids"]
        target = [*tokenizer(" " + str(answer).strip(), add_special_tokens=False)["input_ids"], eos]
        row = (prompt + target)[:max_length]
        label = ([-100] * len(prompt) + target)[:max_length]
        fill = max_length - len(row)
        ids.append(row + [pad] * fill)
        masks.append([1] * len(row) + [0] * fill)
        labels.append(label + [-100] * fill)
    return {
        "input_ids": torch.tensor(ids, dtype=torch.long),
        "attention_mask": torch.tensor(masks, dtype=torch.long),
        "labels": torch.tensor(labels, dtype=torch.long),
    }


class PublishedIntraLoader:
    """The published per-step intra-class stacks: files of the retrieved class decoded and augmented.

    Args:
        pools: class index -> that class's image files (the intra-class bank's classes, in order).
        mean, std: CLIP normalisation.
        num_images: K; size: side of each view (84).
        seed: seeds the loader's ``random.Random`` (the published code never seeds it).
    """

    def __init__(
        self, pools: Sequence[Sequence[Path]], mean, std, *, num_images: int = 36, size: int = 84, seed=0
    ):
        from torchvision import transforms as T

        self.pools = [list(p) for p in pools]
        self.num_images = num_images
        self.rng = random.Random(seed)
        self.transform = T.Compose(
            [T.RandomResizedCrop(size, scale=(0.08, 1.0)), T.ToTensor(), T.Normalize(list(mean), list(std))]
        )

    def stack(self, class_index: int) -> torch.Tensor:
        """``(K, 3, size, size)`` float32: K files drawn with replacement, each decoded and augmented."""
        from PIL import Image

        views = []
        for path in self.rng.choices(self.pools[class_index], k=self.num_images):
            with Image.open(path) as handle:
                views.append(self.transform(handle.convert("RGB")))
        return torch.stack(views)

    def stacks(self, classes: torch.Tensor) -> torch.Tensor:
        return torch.stack([self.stack(int(c)) for c in classes.tolist()])


def decode_batch(paths: Sequence[Path], size: int, mean, std) -> torch.Tensor:
    """Question images decoded with PIL every step: ``(B, 3, size, size)`` float32, CLIP-normalised."""
    from bamco_fast.data.images import decode_image

    pixels = torch.stack([decode_image(p, size) for p in paths]).float().div_(255.0)
    return (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


class PublishedVQAStep:
    """Data + frozen towers + eager intra-class encoder + 256-token LLM step with full logits + AdamW.

    Args:
        model: the :class:`~bamco_fast.models.vqa.VQAModel` (its weights are shared with our rows; the
            intra-class encoder is switched to the eager backend for the published step and back after).
        loader: :class:`PublishedIntraLoader` over the bank's classes.
        optimizer: AdamW over the model's trainable parameters.
    """

    def __init__(self, model, loader: PublishedIntraLoader, optimizer, *, max_length: int = 256):
        self.model, self.loader, self.optimizer, self.max_length = model, loader, optimizer, max_length

    def _frozen(self, prof, records) -> FrozenFeatures:
        model = self.model
        ks, bank, towers = model.knowledge_space, model.intra_bank, model.knowledge_space.towers
        with prof.phase("data"):
            images = decode_batch(
                [r.image_path for r in records], towers.image_size, towers.image_mean, towers.image_std
            )
        with torch.no_grad(), prof.frozen():
            patches = ks.patch_tokens(images, positional=False)
            classes = bank.retrieve(ks.encode_image(images))
            knowledge = torch.cat([ks.encode_text([r.question]) for r in records])
        with prof.phase("data"):
            stacks = self.loader.stacks(classes)
        with torch.no_grad(), prof.frozen():
            intra = ks.encode_intra_class(stacks)
        return FrozenFeatures(patches, knowledge, intra, classes)

    def step(self, records) -> StepResult:
        model = self.model
        encoder = model.knowledge_space.intra_encoder
        prof = VQAStepProfiler(model)
        encoder.set_backend("reference")
        try:
            prof.start()
            frozen = self._frozen(prof, records)
            with prof.phase("data"):
                batch = published_batch(
                    model.tokenizer,
                    model.prefix_ids(),
                    [r.question for r in records],
                    [r.answer for r in records],
                    max_length=self.max_length,
                )
            return StepResult(*prof.finish_step(model, frozen, batch, self.optimizer, answer_only=False))
        finally:
            encoder.set_backend(None)
            prof.close()
